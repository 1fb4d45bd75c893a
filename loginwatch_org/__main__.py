"""``python -m loginwatch_org``: the same as the ``loginwatch-org`` executable."""

from loginwatch_org.entry import main

main()
