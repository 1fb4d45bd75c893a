"""Local AWS emulator for trying loginwatch-org without an AWS account.

``server`` runs the emulator, ``behaviour`` holds every place where the emulator is taught to act
the way AWS does, and ``mailbox`` reads back the emails that SES accepted.
"""
