"""Which code a sandbox runs: a digest of the loginwatch_org package's source.

A sandbox started with ``sandbox up`` (or by ``demo``) outlives the command, and another checkout or version of
the tool may later find it running: its behaviour (what it models of AWS, the notifier it runs) would then not be
the code under test. The server records this digest in its state file, and a command uses a running sandbox only
when the digests match.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent.parent


@cache
def code_identity() -> str:
    digest = hashlib.sha256()
    for path in sorted(_PACKAGE.rglob("*.py")):
        digest.update(path.relative_to(_PACKAGE).as_posix().encode("utf-8"))
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]
