"""Run the sandbox: a local AWS emulator holding an AWS Organization, on 127.0.0.1.

    python -m loginwatch_org.sandbox.server --state-file PATH --organization-json JSON|@FILE [--port 0]

The organisation (``--organization-json``, inline or ``@file``)::

    {"management_account": "999988887777", "root_id": "r-ab12",
     "organizational_units": {"ou-ab12-11111111": ["111122223333"]},
     "accounts_in_root": [], "account_names": {"111122223333": "workloads"},
     "sender": "alerts@example.com"}

Optional keys: ``organization_id``, ``organizational_unit_names`` ({ou id: name}), ``regions``
(where the sender is verified, default ``["us-east-1"]``), ``stacksets_trusted_access``
(default true: StackSets trusted access already activated, as in most organisations) and ``mail_account``
(an account of the organisation: the sender is then verified there only, as ``delivery.mail_account`` asks).

Once the emulator is ready, the state file is written (atomically) as JSON with
``endpoint_url``, ``pid``, ``port``, ``management_account``, ``region``, ``credentials`` (the fake
management-account credentials to use), ``member_role_name`` (assume it in a member account),
``root_id``, ``accounts``, ``sender``, ``mail_account``, ``code`` (a digest of the loginwatch-org code it runs) and
``startup_seconds``.  The sandbox serves until SIGTERM or SIGINT, then removes the state file.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Final
from unittest import mock

__all__ = [
    "DEFAULT_REGION",
    "FAKE_SECRET_ACCESS_KEY",
    "MEMBER_ROLE_NAME",
    "OrganizationSpec",
    "access_key_id_for",
    "load_organization",
    "main",
    "seed_organization",
    "serve",
]

logger = logging.getLogger(__name__)

DEFAULT_REGION: Final = "us-east-1"
#: Every account's role that the management account can assume (created with the account).
MEMBER_ROLE_NAME: Final = "OrganizationAccountAccessRole"
#: The emulator never checks signatures: the secret only has to be present.
FAKE_SECRET_ACCESS_KEY: Final = "testing"
HOST: Final = "127.0.0.1"

_ACCOUNT_ID = re.compile(r"^\d{12}$")
_ROOT_ID = re.compile(r"^r-[a-z0-9]{4,32}$")
_OU_ID = re.compile(r"^ou-[a-z0-9]{4,32}-[a-z0-9]{8,32}$")
_ORG_ID = re.compile(r"^o-[a-z0-9]{10,32}$")


@dataclass(frozen=True)
class OrganizationSpec:
    """The organisation the sandbox holds: the exact ids the product's configuration uses."""

    management_account: str
    root_id: str
    organizational_units: Mapping[str, Sequence[str]]
    accounts_in_root: Sequence[str] = ()
    account_names: Mapping[str, str] = field(default_factory=dict)
    sender: str = ""
    organization_id: str | None = None
    organizational_unit_names: Mapping[str, str] = field(default_factory=dict)
    regions: Sequence[str] = (DEFAULT_REGION,)
    stacksets_trusted_access: bool = True
    mail_account: str | None = None
    # The identity delivery.ses_identity_arn names (an address or a domain), verified where the sender is: an
    # organisation prepared for the product has verified what its config names.
    ses_identity: str = ""

    @property
    def member_accounts(self) -> list[str]:
        """Every account but the management account (which may be listed too, e.g. in an OU), OU
        members first, in configuration order."""
        members = [a for accounts in self.organizational_units.values() for a in accounts]
        members += list(self.accounts_in_root)
        return [a for a in dict.fromkeys(members) if a != self.management_account]

    @property
    def sending_accounts(self) -> list[str]:
        """Where the sender is verified: the mail account alone when there is one, else every account."""
        if self.mail_account is not None:
            return [self.mail_account]
        return [self.management_account, *self.member_accounts]

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> OrganizationSpec:
        """Build from the parsed JSON, rejecting ids AWS would never hand out."""
        problems: list[str] = []

        def check(value: Any, pattern: re.Pattern[str], what: str) -> str:
            text = str(value)
            if not pattern.match(text):
                problems.append(f"{what} {text!r} does not look like {pattern.pattern}")
            return text

        management = check(data.get("management_account", ""), _ACCOUNT_ID, "management_account")
        root_id = check(data.get("root_id", ""), _ROOT_ID, "root_id")
        ous: dict[str, list[str]] = {}
        for ou_id, accounts in dict(data.get("organizational_units") or {}).items():
            check(ou_id, _OU_ID, "organizational unit")
            if ou_id.split("-")[1] != root_id.removeprefix("r-"):
                problems.append(f"organizational unit {ou_id!r} must embed the root id {root_id!r}")
            ous[ou_id] = [check(a, _ACCOUNT_ID, f"account of {ou_id}") for a in accounts or []]
        in_root = [check(a, _ACCOUNT_ID, "account in root") for a in data.get("accounts_in_root") or []]
        placed = [a for accounts in ous.values() for a in accounts] + in_root
        duplicates = sorted({a for a in placed if placed.count(a) > 1})
        if duplicates:
            problems.append(f"accounts placed more than once: {', '.join(duplicates)}")
        organization_id = data.get("organization_id")
        if organization_id is not None:
            check(organization_id, _ORG_ID, "organization_id")
        mail_account = data.get("mail_account")
        if mail_account is not None:
            mail_account = check(mail_account, _ACCOUNT_ID, "mail_account")
            if mail_account != management and mail_account not in placed:
                problems.append(f"mail_account {mail_account} is not an account of the organisation")
        sender = str(data.get("sender") or "")
        if sender and "@" not in sender:
            problems.append(f"sender {sender!r} is not an email address")
        if problems:
            raise ValueError("Invalid sandbox organisation: " + "; ".join(problems))
        return cls(
            management_account=management,
            root_id=root_id,
            organizational_units=ous,
            accounts_in_root=in_root,
            account_names={str(k): str(v) for k, v in dict(data.get("account_names") or {}).items()},
            sender=sender,
            organization_id=organization_id,
            organizational_unit_names={
                str(k): str(v) for k, v in dict(data.get("organizational_unit_names") or {}).items()
            },
            regions=tuple(data.get("regions") or (DEFAULT_REGION,)),
            stacksets_trusted_access=bool(data.get("stacksets_trusted_access", True)),
            mail_account=mail_account,
            ses_identity=str(data.get("ses_identity") or ""),
        )


def load_organization(argument: str) -> OrganizationSpec:
    """Parse ``--organization-json``: inline JSON, or ``@path`` to a JSON file."""
    text = Path(argument[1:]).read_text(encoding="utf-8") if argument.startswith("@") else argument
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("The sandbox organisation must be a JSON object")
    return OrganizationSpec.from_mapping(data)


def access_key_id_for(account: str) -> str:
    """The fixed fake access key id that acts in ``account``: readable, and shaped like a real one
    (20 upper-case letters and digits), which the emulator needs to tell accounts apart."""
    return f"AKIA{account}SBOX"


@contextmanager
def _supplying(generator: str, ids: Sequence[str]) -> Iterator[None]:
    """Make moto's ``generator`` hand out ``ids`` (then random ones again) instead of random ids.

    The ids are supplied to moto's own constructors rather than changed afterwards because an
    account needs its final id when it is created: its IAM role is created in it.
    """
    from moto.organizations import utils as org_utils

    fallback: Callable[..., str] = getattr(org_utils, generator)
    pending = list(ids)

    def supply(*args: Any) -> str:
        return pending.pop(0) if pending else fallback(*args)

    with mock.patch.object(org_utils, generator, supply):
        yield


def seed_organization(spec: OrganizationSpec) -> None:
    """Create the organisation in the emulator with exactly the ids of ``spec``, register the fake
    management-account credentials, and verify the sender in every account and Region."""
    from moto.iam.models import iam_backends
    from moto.organizations.models import organizations_backends
    from moto.ses.models import ses_backends
    from moto.utilities.utils import get_partition

    from loginwatch_org.sandbox.behaviour import prerequisites
    from loginwatch_org.sandbox.behaviour.stacksets import STACKSETS_SERVICE_PRINCIPAL

    partition = get_partition(DEFAULT_REGION)
    org = organizations_backends[spec.management_account][partition]
    members = spec.member_accounts
    with (
        _supplying("make_random_root_id", [spec.root_id]),
        _supplying("make_random_org_id", [spec.organization_id] if spec.organization_id else []),
    ):
        org.create_organization(region=DEFAULT_REGION, FeatureSet="ALL")
    with _supplying("make_random_ou_id", list(spec.organizational_units)):
        for ou_id in spec.organizational_units:
            name = spec.organizational_unit_names.get(ou_id, ou_id)
            org.create_organizational_unit(Name=name, ParentId=spec.root_id)
    with _supplying("make_random_account_id", members):
        for account in members:
            name = spec.account_names.get(account, f"account-{account}")
            org.create_account(AccountName=name, Email=f"aws+{account}@example.com")
    for ou_id, accounts in spec.organizational_units.items():
        for account in accounts:
            org.move_account(AccountId=account, SourceParentId=spec.root_id, DestinationParentId=ou_id)
    management = org.get_account_by_id(spec.management_account)
    management.name = spec.account_names.get(spec.management_account, management.name)
    if spec.stacksets_trusted_access:
        org.enable_aws_service_access(ServicePrincipal=STACKSETS_SERVICE_PRINCIPAL)

    # moto maps a request to an account by looking its access key id up in each account's IAM.
    iam = iam_backends[spec.management_account][partition]
    key = iam.create_temp_access_key()
    del iam.access_keys[key.access_key_id]
    key.access_key_id = access_key_id_for(spec.management_account)
    key.secret_access_key = FAKE_SECRET_ACCESS_KEY
    iam.access_keys[key.access_key_id] = key

    # Real organisations give accounts IAM aliases; the notifier names the account in its email by it.
    for account in [spec.management_account, *members]:
        alias = _account_alias(spec.account_names.get(account, ""))
        if alias:
            iam_backends[account][partition].create_account_alias(alias)

    if spec.sender:
        for account in spec.sending_accounts:
            for region in spec.regions:
                ses_backends[account][region].verify_email_identity(spec.sender)
                if spec.ses_identity and "@" not in spec.ses_identity:
                    ses_backends[account][region].verify_domain(spec.ses_identity)
                elif spec.ses_identity:
                    ses_backends[account][region].verify_email_identity(spec.ses_identity)
    prerequisites.seed(spec)


def _account_alias(name: str) -> str | None:
    """An IAM account alias from an account name: lowercase letters, digits and inner hyphens, 3-63 long."""
    alias = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63].strip("-")
    return alias if len(alias) >= 3 else None


def _write_atomically(path: Path, document: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=2)
            handle.write("\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _check_port_free(port: int) -> None:
    """Fail fast: the emulator's server thread would wait forever on a port it cannot bind."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # Bind the way the server will (it reuses addresses), so a closing connection is no clash.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError as error:
            raise ValueError(f"Port {port} on {HOST} is not free: {error.strerror}") from error


def _isolate_from_real_aws() -> None:
    """The sandbox never talks to AWS: drop anything that could make it read real credentials or
    profiles, and the setting that would pin every request to one account."""
    for name in (
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_ENDPOINT_URL",
        "MOTO_ACCOUNT_ID",
    ):
        os.environ.pop(name, None)
    os.environ["AWS_CONFIG_FILE"] = os.devnull
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull


def serve(spec: OrganizationSpec, state_file: Path, port: int = 0, *, started: float | None = None) -> None:
    """Run the sandbox until SIGTERM/SIGINT; the state file exists exactly while it is ready.

    Meant for the sandbox's own process (it installs signal handlers and changes moto for good).
    """
    started = time.monotonic() if started is None else started
    _check_port_free(port)
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    from moto.server import ThreadedMotoServer

    from loginwatch_org.sandbox import behaviour, identities, mailbox
    from loginwatch_org.sandbox.identity import code_identity

    mailbox.install_route()
    identities.install_route(spec.sending_accounts, spec.regions, spec.sender, spec.ses_identity)
    server = ThreadedMotoServer(ip_address=HOST, port=port, verbose=False)
    server.start()
    try:
        host, bound_port = server.get_host_and_port()
        endpoint_url = f"http://{host}:{bound_port}"
        behaviour.apply(endpoint_url=endpoint_url)
        seed_organization(spec)
        startup_seconds = round(time.monotonic() - started, 3)
        _write_atomically(
            state_file,
            {
                "endpoint_url": endpoint_url,
                "pid": os.getpid(),
                "port": bound_port,
                "management_account": spec.management_account,
                "region": DEFAULT_REGION,
                "credentials": {
                    "aws_access_key_id": access_key_id_for(spec.management_account),
                    "aws_secret_access_key": FAKE_SECRET_ACCESS_KEY,
                },
                "member_role_name": MEMBER_ROLE_NAME,
                "root_id": spec.root_id,
                "accounts": [spec.management_account, *spec.member_accounts],
                "sender": spec.sender,
                "mail_account": spec.mail_account,
                "code": code_identity(),
                "startup_seconds": startup_seconds,
            },
        )
        logger.info("Sandbox ready at %s after %.2fs", endpoint_url, startup_seconds)
        while not stop.wait(0.5):
            pass
    finally:
        try:
            written = json.loads(state_file.read_text(encoding="utf-8")) if state_file.exists() else {}
            if written.get("pid") == os.getpid():
                state_file.unlink()
        finally:
            server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    started = time.monotonic()
    parser = argparse.ArgumentParser(
        prog="python -m loginwatch_org.sandbox.server",
        description="Run a local AWS emulator holding an AWS Organization, on 127.0.0.1.",
    )
    parser.add_argument("--state-file", type=Path, required=True, help="written once the sandbox is ready")
    parser.add_argument("--organization-json", required=True, help="the organisation as JSON, or @file")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free port)")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # One line per request is noise unless asked for.
    logging.getLogger("werkzeug").setLevel(logging.INFO if args.verbose else logging.WARNING)
    _isolate_from_real_aws()
    try:
        spec = load_organization(args.organization_json)
        _check_port_free(args.port)
    except (OSError, ValueError) as error:
        parser.error(str(error))
    serve(spec, args.state_file, args.port, started=started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
