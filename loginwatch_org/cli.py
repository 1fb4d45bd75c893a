"""``loginwatch-org``: parse, call, render. The flows live in ``workflow``; AWS calls in ``aws``."""

from __future__ import annotations

import difflib
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from loginwatch_org.config import DEFAULT_CONFIG_PATH, Config, ConfigError, load_config

app = typer.Typer(
    help="Email the right people about every AWS console sign-in, in every account of an AWS Organization.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="The accounts file.")]
ProfileOption = Annotated[str | None, typer.Option(help="AWS profile (standard credential chain otherwise).")]
RegionOption = Annotated[
    str | None, typer.Option(help="StackSets administrator region (default: the config's stack_set.admin_region).")
]
EndpointOption = Annotated[
    str | None, typer.Option(help="AWS endpoint URL, for a local emulator (or set AWS_ENDPOINT_URL).")
]
SandboxOption = Annotated[
    bool, typer.Option("--sandbox", help="Run against the local sandbox (an AWS emulator on 127.0.0.1).")
]

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_CHANGES_PENDING = 2


def _fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(code)


def _load(path: Path, exit_code: int = EXIT_USAGE) -> Config:
    try:
        return load_config(path)
    except ConfigError as error:
        typer.echo(f"Invalid configuration ({len(error.problems)} problem(s)):", err=True)
        for problem in error.problems:
            typer.echo(f"  {problem}", err=True)
        raise typer.Exit(exit_code) from None


@contextmanager
def _aws(
    config: Config, profile: str | None, region: str | None, endpoint_url: str | None, sandbox: bool
) -> Iterator[Any]:
    """Clients for the real AWS, or for the sandbox (started for this command if none is up)."""
    from loginwatch_org.aws.errors import AwsProblem
    from loginwatch_org.aws.session import AwsTarget, client
    from loginwatch_org.workflow import Clients

    try:
        if sandbox:
            from loginwatch_org.sandbox.control import SandboxError, sandbox_target

            try:
                with sandbox_target(config, progress=_note) as target:
                    yield Clients(client(target, "cloudformation"), client(target, "organizations"))
            except SandboxError as error:
                _fail(str(error))
            return
        # The stack set lives in one administrator region: a caller's default region must not pick another.
        target = AwsTarget(profile=profile, region=region or config.stack_set.admin_region, endpoint_url=endpoint_url)
        yield Clients(client(target, "cloudformation"), client(target, "organizations"))
    except AwsProblem as problem:
        _fail(str(problem))
    except Exception as error:  # botocore's credential/endpoint errors, raised while creating clients
        from loginwatch_org.aws.errors import explain, is_aws_error

        if is_aws_error(error):
            _fail(str(explain(error)))
        raise


def _confirm(yes: bool, command: str, question: str) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        _fail(f"{command} needs confirmation; rerun with --yes to apply without a prompt", EXIT_USAGE)
    if not typer.confirm(question):
        _fail("nothing changed", EXIT_ERROR)


def _note(message: str) -> None:
    typer.echo(f"  ... {message}", err=True)


class _Progress:
    """Progress on stderr: a spinner showing the latest step on a terminal, plain lines otherwise."""

    def __init__(self) -> None:
        self._spinner: Any = None

    def __call__(self, message: str) -> None:
        if not sys.stderr.isatty():
            typer.echo(f"  ... {message}", err=True)
            return
        if self._spinner is None:
            from rich.console import Console

            self._spinner = Console(stderr=True).status(message)
            self._spinner.start()
        self._spinner.update(message)

    def pause(self) -> None:
        """Clear the spinner before printing results, so the two never interleave."""
        if self._spinner is not None:
            self._spinner.stop()
            self._spinner = None


def _progress_printer() -> _Progress:
    return _Progress()


@app.command()
def validate(config: ConfigOption = DEFAULT_CONFIG_PATH) -> None:
    """Check the accounts file; exit 2 with every problem (file, line, field) if it is invalid."""
    loaded = _load(config)
    targets = loaded.targets()
    groups = {(t.recipients, t.alert_on) for t in targets}
    disabled = len(loaded.disabled_account_ids())
    typer.echo(
        f"{config}: valid. {len(targets)} account(s) watched"
        + (f", {disabled} disabled" if disabled else "")
        + f", {len(groups)} distinct recipient/policy group(s); stack set '{loaded.stack_set.name}' "
        f"({loaded.stack_set.permission_model}) in {', '.join(loaded.stack_set.regions)}."
    )
    if loaded.stack_set.regions == ["us-east-1"]:
        typer.echo(
            "Note: only us-east-1 is watched. Sign-ins through regional sign-in endpoints are recorded in their "
            "own region; add those regions to stack_set.regions (README: Regions and SES)."
        )


@app.command()
def export(
    config: ConfigOption = DEFAULT_CONFIG_PATH,
    fmt: Annotated[str, typer.Option("--format", "-f", help="yaml or json.")] = "yaml",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write (default: stdout).")] = None,
    check: Annotated[
        bool, typer.Option("--check", help="Exit 1 with a diff if --output (or templates/) is not current.")
    ] = False,
) -> None:
    """Write the CloudFormation template one account receives, for review."""
    from loginwatch_org.templates import REGISTRY, TEMPLATE_BODY_LIMIT, build_template, render, template_body

    if fmt not in ("yaml", "json"):
        _fail(f"--format must be yaml or json, not '{fmt}'", EXIT_USAGE)
    loaded = _load(config)
    template = build_template(loaded)
    text = render(template, "json" if fmt == "json" else "yaml")
    size = len(template_body(template).encode("utf-8"))
    if size > TEMPLATE_BODY_LIMIT:
        _fail(f"the template body is {size} bytes; StackSets accept at most {TEMPLATE_BODY_LIMIT}")
    if check:
        target = output or REGISTRY["watch"].path("json" if fmt == "json" else "yaml")
        current = target.read_text(encoding="utf-8") if target.exists() else ""
        if current != text:
            diff = difflib.unified_diff(
                current.splitlines(keepends=True), text.splitlines(keepends=True), str(target), "generated"
            )
            sys.stdout.writelines(diff)
            _fail(f"{target} is stale; regenerate it with: loginwatch-org export -o {target}")
        typer.echo(f"{target} is current ({size} bytes as a StackSet template body).")
        return
    if output is None:
        sys.stdout.write(text)
        return
    if output.is_dir():
        _fail(f"--output {output} is a directory; name the file, e.g. {output / f'watch.{fmt}'}")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    typer.echo(f"wrote {output} ({size} bytes as a StackSet template body)", err=True)


@app.command()
def plan(
    config: ConfigOption = DEFAULT_CONFIG_PATH,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
    detailed_exitcode: Annotated[
        bool, typer.Option("--detailed-exitcode", help="Exit 0: no changes, 2: changes pending, 1: error.")
    ] = False,
    prune: Annotated[
        bool, typer.Option("--prune", help="Plan to delete instances of accounts no longer listed.")
    ] = False,
    profile: ProfileOption = None,
    region: RegionOption = None,
    endpoint_url: EndpointOption = None,
    sandbox: SandboxOption = False,
) -> None:
    """Show what a rollout would change, without changing anything."""
    from loginwatch_org.render import render_plan
    from loginwatch_org.workflow import prepare

    # With --detailed-exitcode, 2 means "changes pending", so every error is 1 (terraform's convention).
    loaded = _load(config, EXIT_ERROR if detailed_exitcode else EXIT_USAGE)
    with _aws(loaded, profile, region, endpoint_url, sandbox) as clients:
        prepared = prepare(loaded, clients, prune=prune)
    if as_json:
        typer.echo(json.dumps(prepared.plan.to_dict(), indent=2))
    else:
        typer.echo(render_plan(prepared.plan))
    if prepared.snapshot.pending_operations:
        typer.echo(
            f"Note: {len(prepared.snapshot.pending_operations)} operation(s) of an earlier run are still pending; "
            "rollout waits for them before planning again.",
            err=True,
        )
    if detailed_exitcode and prepared.plan.has_changes:
        raise typer.Exit(EXIT_CHANGES_PENDING)


@app.command()
def rollout(
    config: ConfigOption = DEFAULT_CONFIG_PATH,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    prune: Annotated[bool, typer.Option("--prune", help="Delete instances of accounts no longer listed.")] = False,
    profile: ProfileOption = None,
    region: RegionOption = None,
    endpoint_url: EndpointOption = None,
    sandbox: SandboxOption = False,
) -> None:
    """Make every member account match the config: plan, confirm, apply, report each account."""
    loaded = _load(config)
    with _aws(loaded, profile, region, endpoint_url, sandbox) as clients:
        _rollout(loaded, clients, yes=yes, prune=prune)


def _rollout(loaded: Config, clients: Any, *, yes: bool, prune: bool) -> bool:
    """Plan, confirm and apply; returns whether anything changed (and a per-account table was printed)."""
    from loginwatch_org.aws.executor import ApplyResult
    from loginwatch_org.render import render_plan, render_result, render_status
    from loginwatch_org.workflow import account_statuses, make_executor, prepare, read_snapshot, unconverged

    progress = _progress_printer()
    executor = make_executor(loaded, clients, progress=progress)
    prepared = prepare(loaded, clients, prune=prune, executor=executor, progress=progress)
    progress.pause()
    if prepared.resumed:
        typer.echo("Operations an earlier, interrupted run had submitted:")
        typer.echo(render_result(ApplyResult(operations=prepared.resumed)))
    typer.echo(render_plan(prepared.plan))
    if not prepared.plan.has_changes:
        return False
    _confirm(yes, "rollout", "Apply this plan?")
    result = executor.apply(prepared.plan)
    snapshot = read_snapshot(loaded, clients)
    progress.pause()
    typer.echo(render_result(result))
    typer.echo(render_status(account_statuses(loaded, snapshot)))
    problems = unconverged(loaded, prepared.plan, snapshot)
    for failed in result.failed_accounts:
        problems.setdefault(failed.account_id, failed.reason or failed.status)
    if problems:
        typer.echo("Not converged:", err=True)
        for account_id, why in sorted(problems.items()):
            typer.echo(f"  {account_id}: {why}", err=True)
        _fail(f"{len(problems)} account(s) are not as the config says; fix the cause and run the rollout again.")
    configured = {t.account_id for t in loaded.targets()} - set(prepared.plan.skipped_accounts)
    typer.echo(f"Rollout complete: {len(configured)} account(s) current.")
    return True


@app.command()
def status(
    config: ConfigOption = DEFAULT_CONFIG_PATH,
    as_json: Annotated[bool, typer.Option("--json", help="Print the rows as JSON.")] = False,
    drift: Annotated[bool, typer.Option("--drift", help="Run stack set drift detection first.")] = False,
    profile: ProfileOption = None,
    region: RegionOption = None,
    endpoint_url: EndpointOption = None,
    sandbox: SandboxOption = False,
) -> None:
    """One row per account: deployed status and recipients beside the config."""
    from dataclasses import asdict

    from loginwatch_org.render import render_status
    from loginwatch_org.workflow import account_statuses, detect_drift, make_executor, read_snapshot

    loaded = _load(config)
    with _aws(loaded, profile, region, endpoint_url, sandbox) as clients:
        progress = _progress_printer()
        if drift:
            detect_drift(loaded, clients, make_executor(loaded, clients, progress=progress))
        snapshot = read_snapshot(loaded, clients)
        progress.pause()
    if snapshot.stack_set is None:
        _fail(f"stack set '{loaded.stack_set.name}' does not exist yet; run: loginwatch-org rollout")
    rows = account_statuses(loaded, snapshot)
    if as_json:
        typer.echo(json.dumps([{**asdict(row), "in_sync": row.in_sync} for row in rows], indent=2))
    else:
        typer.echo(render_status(rows))
    # Non-zero when anything needs attention, so status can gate a pipeline or feed a monitor.
    watched = {t.account_id for t in loaded.targets()}
    if any(row.account_id in watched and (not row.in_sync or row.drift == "DRIFTED") for row in rows):
        raise typer.Exit(EXIT_ERROR)


@app.command()
def remove(
    config: ConfigOption = DEFAULT_CONFIG_PATH,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    retain_stacks: Annotated[
        bool, typer.Option("--retain-stacks", help="Detach the stacks from the stack set but keep them.")
    ] = False,
    account: Annotated[
        list[str] | None, typer.Option("--account", help="Only these accounts (repeatable); default: all.")
    ] = None,
    profile: ProfileOption = None,
    region: RegionOption = None,
    endpoint_url: EndpointOption = None,
    sandbox: SandboxOption = False,
) -> None:
    """Delete stack instances (all, or --account ones), then the stack set once it is empty."""
    from loginwatch_org.plan import make_removal_plan
    from loginwatch_org.render import render_plan, render_result
    from loginwatch_org.workflow import make_executor, read_snapshot

    loaded = _load(config)
    with _aws(loaded, profile, region, endpoint_url, sandbox) as clients:
        snapshot = read_snapshot(loaded, clients)
        if snapshot.stack_set is None:
            typer.echo(f"Stack set '{loaded.stack_set.name}' does not exist; nothing to remove.")
            return
        removal = make_removal_plan(loaded, snapshot, tuple(account or ()), retain_stacks=retain_stacks)
        typer.echo(render_plan(removal))
        if not removal.has_changes:
            return
        _confirm(yes, "remove", "Delete these stack instances?")
        progress = _progress_printer()
        result = make_executor(loaded, clients, progress=progress).apply(removal)
        progress.pause()
    typer.echo(render_result(result))
    if result.failed_accounts:
        _fail("some instances could not be deleted (see above); run remove again after fixing the cause")


@app.command()
def doctor(
    config: ConfigOption = DEFAULT_CONFIG_PATH,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
    member_role: Annotated[
        str, typer.Option(help="Role assumed in other accounts to read their SES, Regions and roles.")
    ] = "OrganizationAccountAccessRole",
    profile: ProfileOption = None,
    region: RegionOption = None,
    endpoint_url: EndpointOption = None,
    sandbox: SandboxOption = False,
) -> None:
    """Check, read-only, what real AWS needs for alerts to arrive; exit 1 unless every check passes."""
    from loginwatch_org.aws.prerequisites import gather
    from loginwatch_org.aws.session import AwsTarget
    from loginwatch_org.doctor import all_passed, evaluate, render_json, render_text
    from loginwatch_org.errors import LoginwatchError

    loaded = _load(config)
    try:
        if sandbox:
            from loginwatch_org.sandbox.control import sandbox_target

            with sandbox_target(loaded, progress=_note) as target:
                facts = gather(loaded, target, member_role)
        else:
            target = AwsTarget(
                profile=profile, region=region or loaded.stack_set.admin_region, endpoint_url=endpoint_url
            )
            facts = gather(loaded, target, member_role)
    except LoginwatchError as error:
        _fail(str(error), error.exit_code)
    results = evaluate(loaded, facts)
    typer.echo(render_json(results) if as_json else render_text(results))
    if not all_passed(results):
        raise typer.Exit(EXIT_ERROR)


sandbox_app = typer.Typer(help="A local AWS emulator on 127.0.0.1 holding the config's organisation.")
app.add_typer(sandbox_app, name="sandbox")


@sandbox_app.command("up")
def sandbox_up(config: ConfigOption = DEFAULT_CONFIG_PATH) -> None:
    """Start a sandbox that outlives this command (commands with --sandbox then use it)."""
    from loginwatch_org.sandbox import control

    loaded = _load(config)
    try:
        sandbox, started = control.up(loaded)
    except control.SandboxError as error:
        _fail(str(error))
    verb = "started" if started else "already running"
    typer.echo(
        f"Sandbox {verb} at {sandbox.endpoint_url} (pid {sandbox.pid}): management account "
        f"{sandbox.management_account}, {len(sandbox.accounts) - 1} member account(s). Stop it with: "
        "loginwatch-org sandbox down"
    )


@sandbox_app.command("down")
def sandbox_down() -> None:
    """Stop the sandbox started with 'sandbox up'; everything in it is gone."""
    from loginwatch_org.sandbox import control

    try:
        stopped = control.down()
    except control.SandboxError as error:
        _fail(str(error))
    typer.echo(f"Sandbox at {stopped.endpoint_url} stopped." if stopped else "No sandbox is running.")


@sandbox_app.command("status")
def sandbox_status() -> None:
    """Say where the sandbox runs, if it does (exit 1 if none)."""
    from loginwatch_org.sandbox import control

    try:
        sandbox = control.running()
    except control.SandboxError as error:
        _fail(str(error))
    if sandbox is None:
        typer.echo("No sandbox is running. Start one with: loginwatch-org sandbox up")
        raise typer.Exit(EXIT_ERROR)
    typer.echo(
        f"Sandbox running at {sandbox.endpoint_url} (pid {sandbox.pid}), state in {sandbox.state_file}; "
        f"management account {sandbox.management_account}, {len(sandbox.accounts) - 1} member account(s)."
    )


IdentityOption = Annotated[str, typer.Option("--identity", help="root, iam-user, sso or failed.")]


@app.command("simulate-login")
def simulate_login(
    account: Annotated[str, typer.Argument(help="The member account id that someone signs in to.")],
    identity: IdentityOption = "root",
    config: ConfigOption = DEFAULT_CONFIG_PATH,
    sandbox: SandboxOption = False,
) -> None:
    """Sign in to ACCOUNT's console in the sandbox and print the email SES accepted."""
    if not sandbox:
        _fail("simulate-login only runs in the sandbox (pass --sandbox): real sign-in events come from AWS", EXIT_USAGE)
    loaded = _load(config)
    with _sandbox_session(loaded) as running:
        _simulate(loaded, running, account, identity)


def _check_identity(identity: str) -> None:
    from loginwatch_org.sandbox.simulate import IDENTITIES

    if identity not in IDENTITIES:
        _fail(f"--identity must be one of {', '.join(IDENTITIES)}, not '{identity}'", EXIT_USAGE)


def _simulate(loaded: Config, running: Any, account: str, identity: str) -> None:
    from loginwatch_org.sandbox.simulate import simulate_login

    _check_identity(identity)
    if account not in running.accounts:
        _fail(f"account {account} is not in the sandbox's organisation", EXIT_USAGE)
    names = loaded.account_names()
    label = f"{account} ({names[account]})" if account in names else account
    emails = simulate_login(running, account, identity)  # type: ignore[arg-type]
    typer.echo(f"Simulated {identity} console sign-in to {label}.")
    if not emails:
        watch = next((t for t in loaded.targets() if t.account_id == account), None)
        why = (
            f"its alert policy is '{watch.alert_on}'"
            if watch
            else "no watch is deployed there (disabled, not in the config, or no rollout yet)"
        )
        typer.echo(f"No email was sent: {why}.")
        return
    for sent in emails:
        typer.echo(
            f"Email accepted by SES (message {sent['message_id']}):\n"
            f"  From:    {sent['source']}\n"
            f"  To:      {', '.join(sent['to'])}\n"
            f"  Subject: {sent['subject']}\n"
        )
        typer.echo("\n".join(f"  | {line}" for line in (sent["text"] or "").splitlines()))


@contextmanager
def _sandbox_session(loaded: Config) -> Iterator[Any]:
    from loginwatch_org.sandbox import control

    try:
        with control.sandbox_session(loaded, progress=_note) as running:
            yield running
    except control.SandboxError as error:
        _fail(str(error))


@app.command()
def demo(
    config: ConfigOption = DEFAULT_CONFIG_PATH,
    account: Annotated[str | None, typer.Option(help="Account to sign in to (default: the first watched).")] = None,
    identity: IdentityOption = "root",
) -> None:
    """The main job in the sandbox: roll the config out, show the status, simulate a sign-in and its email."""
    from loginwatch_org.aws.session import client
    from loginwatch_org.render import render_status
    from loginwatch_org.workflow import Clients, account_statuses, read_snapshot

    _check_identity(identity)
    loaded = _load(config)
    chosen = account or loaded.targets()[0].account_id
    with _sandbox_session(loaded) as running:
        target = replace(running.target(), region=loaded.stack_set.admin_region)
        clients = Clients(client(target, "cloudformation"), client(target, "organizations"))
        typer.echo(f"== Rollout of {config} into the sandbox at {running.endpoint_url}")
        if not _rollout(loaded, clients, yes=True, prune=False):
            typer.echo("\n== Status")
            typer.echo(render_status(account_statuses(loaded, read_snapshot(loaded, clients))))
        typer.echo("\n== A console sign-in")
        _simulate(loaded, running, chosen, identity)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
