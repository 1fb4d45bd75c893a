"""Local AWS emulator for trying loginwatch-org without an AWS account.

``server`` runs the emulator; ``behaviour`` holds every place where the emulator is taught to act the
way AWS does (one module per AWS service); ``mailbox`` reads back the emails that SES accepted and
``identities`` keeps the verified sender in step with the config; ``control`` starts, finds and stops
sandboxes for the CLI, and ``simulate`` signs in to a sandbox account and explains what came of it.
"""
