"""Starting, finding and stopping sandboxes, for the CLI.

A sandbox started with ``sandbox up`` (or ``demo``) outlives the command, so ``plan`` -> ``rollout`` ->
edit -> ``plan`` shows real diffs. Its state file lives in a per-user directory
(``$LOGINWATCH_SANDBOX_DIR``, else ``$XDG_STATE_HOME/loginwatch-org``, else
``~/.local/state/loginwatch-org``), never in the working directory, so every command finds the same
sandbox from any folder. A command run with ``--sandbox`` uses it when it holds the config's
organisation (same management account and root); otherwise the command starts a private sandbox that
vanishes when it ends, and says so. Sandbox clients always carry the sandbox's fake credentials: real
ones are never sent to it, and sandbox state never reaches a real endpoint.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from loginwatch_org.aws.session import AwsTarget
from loginwatch_org.config import Config
from loginwatch_org.errors import LoginwatchError

# Seconds the sandbox may take to answer one call: the emulator deploys every stack instance of an operation,
# and runs the functions a simulated sign-in reaches, before it answers (AWS answers at once and works behind an
# operation id, which ``session.READ_TIMEOUT`` relies on).
SANDBOX_READ_TIMEOUT = 300

STATE_DIR_ENV = "LOGINWATCH_SANDBOX_DIR"
STATE_FILE = "sandbox.json"
LOG_FILE = "sandbox.log"
DEFAULT_MANAGEMENT_ACCOUNT = "000011112222"
DEFAULT_ROOT = "r-sbox"
START_TIMEOUT = 60.0


class SandboxError(LoginwatchError):
    """The sandbox could not be started, found or stopped; the message says why."""


@dataclass(frozen=True)
class Sandbox:
    endpoint_url: str
    pid: int
    management_account: str
    access_key_id: str
    secret_access_key: str
    member_role_name: str
    accounts: tuple[str, ...]
    state_file: Path
    root_id: str = ""
    # The account whose SES alone has the sender verified (delivery.mail_account), if any.
    mail_account: str | None = None
    # A digest of the code the sandbox runs (sandbox/identity.py); "" from a sandbox that did not say.
    code: str = ""

    @classmethod
    def from_state(cls, path: Path) -> Sandbox:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            sandbox = cls(
                endpoint_url=str(data["endpoint_url"]),
                pid=int(data["pid"]),
                management_account=str(data["management_account"]),
                access_key_id=str(data["credentials"]["aws_access_key_id"]),
                secret_access_key=str(data["credentials"]["aws_secret_access_key"]),
                member_role_name=str(data["member_role_name"]),
                accounts=tuple(data.get("accounts", ())),
                state_file=path,
                root_id=str(data.get("root_id", "")),
                mail_account=str(data["mail_account"]) if data.get("mail_account") else None,
                code=str(data.get("code") or ""),
            )
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise SandboxError(f"the sandbox state file {path} is unreadable ({error!r}); delete it") from None
        if urlparse(sandbox.endpoint_url).hostname != "127.0.0.1":
            raise SandboxError(f"{path} names {sandbox.endpoint_url}; a sandbox only ever runs on 127.0.0.1")
        return sandbox

    def target(self) -> AwsTarget:
        return AwsTarget(
            region="us-east-1",
            endpoint_url=self.endpoint_url,
            access_key_id=self.access_key_id,
            secret_access_key=self.secret_access_key,
            read_timeout=SANDBOX_READ_TIMEOUT,
        )

    def alive(self) -> bool:
        if not _pid_alive(self.pid):
            return False
        parsed = urlparse(self.endpoint_url)
        try:
            with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 80), timeout=1):
                return True
        except OSError:
            return False


def state_dir() -> Path:
    """Where the user's sandbox keeps its state: the same directory whatever the working directory."""
    configured = os.environ.get(STATE_DIR_ENV)
    if configured:
        return Path(configured).expanduser().absolute()
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base).expanduser().absolute() / "loginwatch-org"


def runs_this_code(sandbox: Sandbox) -> bool:
    """Whether ``sandbox`` runs the code this command runs (see sandbox/identity.py)."""
    from loginwatch_org.sandbox.identity import code_identity

    return sandbox.code == code_identity()


def holds(sandbox: Sandbox, config: Config) -> bool:
    """Whether ``sandbox`` holds the organisation ``config`` describes (management account, root, mail
    account)."""
    spec = organization_spec(config)
    return (
        sandbox.management_account == spec["management_account"]
        and sandbox.root_id in ("", spec["root_id"])
        and sandbox.mail_account == spec["mail_account"]
    )


def organization_spec(config: Config) -> dict[str, Any]:
    """The organisation the sandbox holds: the config's management account, root, OUs and accounts."""
    units = config.stack_set.organizational_units
    roots = [unit for unit in units if unit.startswith("r-")]
    ous = [unit for unit in units if unit.startswith("ou-")]
    root = roots[0] if roots else ("r-" + ous[0].split("-")[1] if ous else DEFAULT_ROOT)
    # An OU id embeds its root's id; OUs of another root cannot exist in this organisation.
    ous = [ou for ou in ous if ou.split("-")[1] == root.removeprefix("r-")]
    management = config.management_account.id if config.management_account else DEFAULT_MANAGEMENT_ACCOUNT
    members = [account.id for account in config.accounts if account.id != management]
    placement: dict[str, list[str]] = {ou: [] for ou in ous}
    for index, account_id in enumerate(members):
        if ous:
            placement[ous[index % len(ous)]].append(account_id)
    in_root = [] if ous else members
    mail_account = config.delivery.mail_account
    regions = list(config.stack_set.regions)
    if mail_account is not None:
        # The mail account belongs to the organisation (its sending role admits the organisation), watched or
        # not; it sends from the Region of its SES identity.
        if mail_account != management and mail_account not in members:
            in_root = [*in_root, mail_account]
        identity_region = config.delivery.identity_region
        if identity_region and identity_region not in regions:
            regions.append(identity_region)
    return {
        "management_account": management,
        "root_id": root,
        "organizational_units": placement,
        "accounts_in_root": in_root,
        "account_names": config.account_names(),
        "sender": config.delivery.sender,
        "ses_identity": config.delivery.identity_name or "",
        "regions": regions,
        "mail_account": mail_account,
    }


def running() -> Sandbox | None:
    """The sandbox ``sandbox up`` started, if it still runs (a stale state file is removed)."""
    path = state_dir() / STATE_FILE
    if not path.exists():
        return None
    sandbox = Sandbox.from_state(path)
    if sandbox.alive():
        return sandbox
    path.unlink(missing_ok=True)
    return None


def start(config: Config, directory: Path, *, detach: bool) -> Sandbox:
    """Start a sandbox whose state file is ``directory/sandbox.json``; returns once it is ready."""
    if importlib.util.find_spec("moto") is None:
        raise SandboxError("the sandbox needs the local AWS emulator: pip install 'loginwatch-org[sandbox]'")
    directory.mkdir(parents=True, exist_ok=True)
    state = directory / STATE_FILE
    organization = directory / "organization.json"
    organization.write_text(json.dumps(organization_spec(config), indent=2), encoding="utf-8")
    log = (directory / LOG_FILE).open("ab")
    command = [
        sys.executable,
        "-m",
        "loginwatch_org.sandbox.server",
        "--state-file",
        str(state),
        "--organization-json",
        f"@{organization}",
    ]
    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=detach, env=_server_env()
    )
    log.close()
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if state.exists():
            return Sandbox.from_state(state)
        if process.poll() is not None:
            raise SandboxError(f"the sandbox exited during start-up:\n{_tail(directory / LOG_FILE)}")
        time.sleep(0.05)
    process.terminate()
    raise SandboxError(f"the sandbox was not ready after {START_TIMEOUT:.0f}s:\n{_tail(directory / LOG_FILE)}")


def stop(sandbox: Sandbox, timeout: float = 10.0) -> None:
    with suppress(ProcessLookupError):
        os.kill(sandbox.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _pid_alive(sandbox.pid) and time.monotonic() < deadline:
        _reap(sandbox.pid)
        time.sleep(0.05)
    if _pid_alive(sandbox.pid):
        os.kill(sandbox.pid, signal.SIGKILL)
        _reap(sandbox.pid)
    sandbox.state_file.unlink(missing_ok=True)


def attach(sandbox: Sandbox, config: Config) -> Sandbox:
    """Use a running sandbox for ``config``: its verified SES sender follows the config's sender."""
    from loginwatch_org.sandbox.identities import sync_sender

    try:
        sync_sender(sandbox.endpoint_url, config.delivery.sender, config.delivery.identity_name or "")
    except OSError as error:
        raise SandboxError(f"the sandbox at {sandbox.endpoint_url} did not answer ({error})") from None
    return sandbox


def up(config: Config) -> tuple[Sandbox, bool]:
    """The running sandbox, or a new detached one; the flag says whether it was started now."""
    existing = running()
    if existing is not None:
        if not runs_this_code(existing):
            raise SandboxError(
                f"the sandbox at {existing.endpoint_url} (pid {existing.pid}) runs other loginwatch-org code (another "
                "checkout or version); stop it first with: loginwatch-org sandbox down"
            )
        if not holds(existing, config):
            raise SandboxError(
                f"the sandbox at {existing.endpoint_url} holds another organisation (management account "
                f"{existing.management_account}); stop it first with: loginwatch-org sandbox down"
            )
        return attach(existing, config), False
    return start(config, state_dir(), detach=True), True


def down() -> Sandbox | None:
    sandbox = running()
    if sandbox is not None:
        stop(sandbox)
    return sandbox


@contextmanager
def sandbox_target(config: Config, progress: Callable[[str], None] | None = None) -> Iterator[AwsTarget]:
    """Clients' target for a command run with ``--sandbox``: the running sandbox, or a private one."""
    with sandbox_session(config, progress) as sandbox:
        yield replace(sandbox.target(), region=config.stack_set.admin_region)


@contextmanager
def sandbox_session(
    config: Config, progress: Callable[[str], None] | None = None, *, keep: bool = False
) -> Iterator[Sandbox]:
    """The user's running sandbox if it holds the config's organisation; else a new one, which outlives
    the command when ``keep`` (as ``sandbox up`` starts it) and is private to it otherwise."""
    existing = running()
    if existing is not None and holds(existing, config) and runs_this_code(existing):
        yield attach(existing, config)
        return
    if keep and existing is None:
        sandbox = start(config, state_dir(), detach=True)
        if progress:
            progress(
                f"started a sandbox at {sandbox.endpoint_url} that keeps running (stop it: loginwatch-org sandbox down)"
            )
        yield sandbox
        return
    if progress:
        why = ""
        if existing is not None:
            other = "holds another organisation" if not holds(existing, config) else "runs other loginwatch-org code"
            why = f"the running sandbox {other}; "
        progress(
            f"{why}starting a private sandbox for this command: it and everything in it vanish when the command "
            "ends (loginwatch-org sandbox up keeps one running)"
        )
    with tempfile.TemporaryDirectory(prefix="loginwatch-sandbox-") as directory:
        sandbox = start(config, Path(directory), detach=False)
        try:
            yield sandbox
        finally:
            stop(sandbox)


def _server_env() -> dict[str, str]:
    env = dict(os.environ)
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                 "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL"):  # fmt: skip
        env.pop(name, None)
    env["AWS_CONFIG_FILE"] = os.devnull
    env["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    return env


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _reap(pid)


def _reap(pid: int) -> bool:
    """Collect our own exited child so it does not linger as a zombie; True if it had exited."""
    try:
        finished, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return finished == pid


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
