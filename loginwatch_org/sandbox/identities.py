"""The sandbox's verified SES sender, kept in step with the config that uses the sandbox.

The sandbox starts with the config's ``delivery.sender`` verified in every account and Region (an
organisation prepared for the product).  When the config names another sender later, the running
sandbox follows it: the new sender is verified and the one it replaces is not any more, so a function
still deployed with the old sender is rejected by SES exactly as it would be in AWS once that identity
is gone, and a rollout of the new sender works.  The identity ``delivery.ses_identity_arn`` names (a domain
or an address) follows the config the same way.  Identities verified through the SES API are left alone.

``install_route()`` adds ``POST <endpoint>/moto-api/sandbox/sender`` to the sandbox (in its process);
``sync_sender()`` calls it from any process.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Sequence
from typing import Any, Final

__all__ = ["SENDER_PATH", "install_route", "sync_sender"]

SENDER_PATH: Final = "/moto-api/sandbox/sender"

# The organisation's accounts and Regions, and the sender verified in them (set by the server).
_organisation: dict[str, Any] = {"accounts": [], "regions": [], "sender": "", "identity": ""}


def sync_sender(endpoint_url: str, sender: str, identity: str = "", *, timeout: float = 10.0) -> None:
    """Make ``sender`` (and ``identity``, an address or a domain) what the sandbox has verified, in every sending
    account and Region of its organisation."""
    request = urllib.request.Request(
        endpoint_url.rstrip("/") + SENDER_PATH,
        data=json.dumps({"sender": sender, "identity": identity}).encode("utf-8"),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        response.read()


def install_route(accounts: Sequence[str], regions: Sequence[str], sender: str, identity: str = "") -> None:
    """Serve the sender route from the sandbox (call before the server handles its first request)."""
    from moto.moto_api._internal import urls

    _organisation.update(accounts=list(accounts), regions=list(regions), sender=sender, identity=identity)
    urls.url_paths["{0}" + SENDER_PATH + "$"] = _serve


def _serve(request: Any, full_url: str, headers: Any) -> tuple[int, dict[str, str], str]:
    from moto.ses.models import ses_backends

    body = request.data if hasattr(request, "data") else request.body
    sender = str(json.loads(body or b"{}").get("sender") or "")
    if "@" not in sender:
        return 400, {"Content-Type": "application/json"}, json.dumps({"error": f"not an email address: {sender!r}"})
    identity = str(json.loads(body or b"{}").get("identity") or "")
    previous = str(_organisation["sender"])
    previous_identity = str(_organisation["identity"])
    for account in _organisation["accounts"]:
        for region in _organisation["regions"]:
            backend = ses_backends[account][region]
            if sender != previous:
                backend.verify_email_identity(sender)
                if previous:
                    backend.delete_identity(previous)
            if identity != previous_identity:
                if identity and "@" not in identity:
                    backend.verify_domain(identity)
                elif identity:
                    backend.verify_email_identity(identity)
                if previous_identity and previous_identity not in (sender, identity):
                    backend.delete_identity(previous_identity)
    _organisation.update(sender=sender, identity=identity)
    return 200, {"Content-Type": "application/json"}, json.dumps({"sender": sender, "previous": previous})
