"""The options every command shares, and the one helper that turns them into a loaded config and clients.

Kept free of heavy imports (no pydantic, no boto3, no troposphere): ``--help`` loads this module.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from loginwatch_org import CONFIG_FLAGS, JSON_FLAG
from loginwatch_org.errors import UsageError

if TYPE_CHECKING:
    from loginwatch_org.aws.session import AwsTarget
    from loginwatch_org.config import Config
    from loginwatch_org.workflow import Clients

DEFAULT_ADMIN_REGION_HELP = "the config's stack_set.admin_region, which defaults to us-east-1"


class TemplateFormat(StrEnum):
    yaml = "yaml"
    json = "json"

    @property
    def literal(self) -> Literal["yaml", "json"]:
        return "json" if self is TemplateFormat.json else "yaml"


class Identity(StrEnum):
    """Who signs in, in a simulated sign-in (loginwatch_org.sandbox.simulate.IDENTITIES)."""

    root = "root"
    iam_user = "iam-user"
    sso = "sso"
    failed = "failed"


class UnitName(StrEnum):
    """The deployment units ``--only`` can choose (``loginwatch_org.plan.UNIT_KEYS``)."""

    watch = "watch"
    forwarders = "forwarders"
    management = "management"
    mail = "mail"


OnlyOption = Annotated[
    list[UnitName] | None,
    typer.Option(
        "--only",
        help="Only this unit (repeatable): watch (member watch stack set), forwarders (member forwarders stack "
        "set), management (the management account's stacks), mail (the mail account's stack). Default: all.",
    ),
]
ConfigOption = Annotated[Path, typer.Option(*CONFIG_FLAGS, help="The accounts file.")]
ProfileOption = Annotated[str | None, typer.Option(help="AWS profile (standard credential chain otherwise).")]
RegionOption = Annotated[
    str | None, typer.Option(help=f"StackSets administrator region (default: {DEFAULT_ADMIN_REGION_HELP}).")
]
EndpointOption = Annotated[
    str | None, typer.Option(help="AWS endpoint URL, for a local emulator (or set AWS_ENDPOINT_URL).")
]
SandboxOption = Annotated[
    bool, typer.Option("--sandbox", help="Run against the local sandbox (an AWS emulator on 127.0.0.1).")
]
JsonOption = Annotated[bool, typer.Option(JSON_FLAG, help="Print the result (or the error) as JSON on stdout.")]
MemberRoleOption = Annotated[
    str,
    typer.Option(help="Role assumed in other accounts to read them (doctor: SES, Regions, roles; test-alert --wait)."),
]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
IdentityOption = Annotated[Identity, typer.Option("--identity", help="Who signs in.")]


@dataclass(frozen=True)
class AwsOptions:
    """Where the AWS commands send their calls: ``--profile``, ``--region``, ``--endpoint-url``, ``--sandbox``."""

    profile: str | None = None
    region: str | None = None
    endpoint_url: str | None = None
    sandbox: bool = False

    def check(self) -> None:
        """Reject what boto3 would turn into a traceback, before anything is imported or sent."""
        for url, origin in ((self.endpoint_url, "--endpoint-url"), (os.environ.get("AWS_ENDPOINT_URL"), None)):
            if url:
                check_endpoint_url(url, origin or "AWS_ENDPOINT_URL")
        if self.region is not None:
            from loginwatch_org.config import AWS_REGIONS

            if self.region not in AWS_REGIONS:
                # botocore would build an endpoint for any name and fail much later with "Cannot reach AWS".
                raise UsageError(
                    f"--region {self.region} is not an AWS Region (the StackSets administrator Region, for "
                    "example us-east-1)"
                )


def check_endpoint_url(url: str, origin: str) -> None:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as error:
        raise UsageError(f"{origin} '{url}' is not a URL ({error}); for example: http://127.0.0.1:5000") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"{origin} '{url}' is not an http(s) URL with a host; for example: http://127.0.0.1:5000")


def load(path: Path) -> Config:
    from loginwatch_org.config import load_config

    return load_config(path)


@contextmanager
def aws_target(
    config: Config, options: AwsOptions, progress: Callable[[str], None] | None = None
) -> Iterator[AwsTarget]:
    """Where the command's AWS calls go: the real AWS as the options say, or the sandbox (started for this
    command if none is up)."""
    from loginwatch_org.aws.session import AwsTarget

    options.check()
    if options.sandbox:
        from loginwatch_org.sandbox.control import sandbox_target

        with sandbox_target(config, progress=progress) as target:
            # The sandbox emulates every Region: --region picks the administrator Region there as in AWS.
            yield replace(target, region=options.region or config.stack_set.admin_region)
        return
    # The stack set lives in one administrator region: a caller's default region must not pick another.
    yield AwsTarget(
        profile=options.profile,
        region=options.region or config.stack_set.admin_region,
        endpoint_url=options.endpoint_url,
    )


@contextmanager
def connect(config: Config, options: AwsOptions, progress: Callable[[str], None] | None = None) -> Iterator[Clients]:
    """Ready clients for the command's AWS target."""
    with aws_target(config, options, progress) as target:
        yield clients_for(target, progress)


def clients_for(target: AwsTarget, progress: Callable[[str], None] | None = None) -> Clients:
    from dataclasses import replace

    from loginwatch_org.aws.session import client
    from loginwatch_org.workflow import Clients

    def cloudformation_for(region: str) -> object:
        # Plain stacks live in several regions of the caller's own account.
        return client(replace(target, region=region), "cloudformation")

    def s3_for(region: str) -> object:
        return client(replace(target, region=region), "s3")

    return Clients(
        client(target, "cloudformation", progress),
        client(target, "organizations", progress),
        client(target, "sts", progress),
        cloudformation_for,
        s3_for,
        target,
    )


def only_units(only: list[UnitName] | None) -> list[str] | None:
    return [unit.value for unit in only] if only else None


def use_colour() -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set to anything (https://no-color.org)."""
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def terminal_width() -> int | None:
    """Columns to fit tables into: COLUMNS, or the terminal's width; None (no limit) when piped."""
    if os.environ.get("COLUMNS", "").isdigit():
        return int(os.environ["COLUMNS"])
    if not sys.stdout.isatty():
        return None
    import shutil

    return shutil.get_terminal_size().columns
