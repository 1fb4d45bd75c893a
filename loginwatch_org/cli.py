"""``loginwatch-org``: parse, call, render. The flows live in ``workflow``; AWS calls in ``aws``.

Every command goes through ``cli_boundary.boundary`` (errors, Ctrl-C) and the AWS commands get their config
and clients from ``cli_options.connect``. Module-level imports stay light: ``--help`` must not pay for
pydantic, troposphere or boto3, so each command imports what it uses.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from loginwatch_org import DEFAULT_CONFIG_PATH, DEFAULT_MEMBER_ROLE, VALIDATE_COMMAND, __version__, suggest
from loginwatch_org.cli_boundary import Progress, boundary, error_document, note
from loginwatch_org.cli_options import (
    AwsOptions,
    ConfigOption,
    EndpointOption,
    Identity,
    IdentityOption,
    JsonOption,
    MemberRoleOption,
    OnlyOption,
    ProfileOption,
    RegionOption,
    SandboxOption,
    TemplateFormat,
    YesOption,
    aws_target,
    clients_for,
    connect,
    load,
    only_units,
    terminal_width,
    use_colour,
)
from loginwatch_org.errors import EXIT_ERROR, LoginwatchError, UsageError
from loginwatch_org.text import fit

if TYPE_CHECKING:
    from loginwatch_org.aws.executor import DriftResult
    from loginwatch_org.config import Config
    from loginwatch_org.doctor import SesSender
    from loginwatch_org.plan import Plan
    from loginwatch_org.state import Snapshot
    from loginwatch_org.units import DeploymentPlan
    from loginwatch_org.workflow import AccountStatus, Clients, UnitOutcome

app = typer.Typer(
    help="Email the right people about every AWS console sign-in, in every account of an AWS Organization.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain help: rich's markup and markdown renderers cost more start-up time than the help they format.
    rich_markup_mode=None,
)

EXIT_CHANGES_PENDING = 2
NOT_IN_ORGANIZATION = "NOT_IN_ORGANIZATION"
_ACCOUNT_ID = re.compile(r"^\d{12}$")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"loginwatch-org {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Email the right people about every AWS console sign-in, in every account of an AWS Organization."""


def _emit_json(document: Any) -> None:
    typer.echo(json.dumps(document, indent=2))


def _confirm(yes: bool, command: str, question: str, as_json: bool = False) -> bool:
    """Whether to go ahead. Without a terminal to ask on, only --yes says so."""
    if yes:
        return True
    if not _interactive():
        raise UsageError(f"{command} needs confirmation; rerun with --yes to apply without a prompt")
    try:
        # With --json, stdout holds only the JSON document: the question goes to stderr.
        return typer.confirm(question, err=as_json)
    except typer.Abort:  # end of input or Ctrl-C at the prompt: nothing was answered
        return False


def _interactive() -> bool:
    return sys.stdin.isatty()


def _declined(as_json: bool, document: dict[str, Any]) -> typer.Exit:
    """Saying no is a choice, not an error: say nothing changed and exit 1 (nothing was applied)."""
    if as_json:
        _emit_json({**document, "applied": False, "declined": True})
    else:
        typer.echo("Nothing changed.", err=True)
    return typer.Exit(EXIT_ERROR)


def _aws_options(profile: str | None, region: str | None, endpoint_url: str | None, sandbox: bool) -> AwsOptions:
    options = AwsOptions(profile, region, endpoint_url, sandbox)
    options.check()  # a malformed endpoint is bad input: exit 2 before the config is even read
    return options


def _statuses(config: Config, snapshot: Snapshot, drift: DriftResult | None = None) -> list[AccountStatus]:
    """Per-account rows, with accounts the organisation does not have marked as the planner skips them, so
    that rollout and status tell the same story about them."""
    from loginwatch_org.workflow import account_statuses

    outside = snapshot.accounts_outside_organization
    return [
        replace(row, status=NOT_IN_ORGANIZATION, reason=_outside_reason(row.account_id))
        if row.account_id in outside and row.status == "MISSING"
        else row
        for row in account_statuses(config, snapshot, drift)
    ]


def _outside_reason(account_id: str) -> str:
    return f"account {account_id} is in the config but not in the organisation; it is skipped"


def _row_document(
    row: AccountStatus, unit: str = "watch", suppressed: Mapping[str | None, Mapping[str, str]] | None = None
) -> dict[str, Any]:
    document = {**asdict(row), "in_sync": row.in_sync, "unit": unit}
    if unit == "watch" and suppressed is not None:
        listed = {**suppressed.get(None, {}), **suppressed.get(row.account_id, {})}
        recipients = [r.strip() for r in (row.recipients_config or "").split(",")]
        document["suppressed_recipients"] = {r: listed[r] for r in recipients if r in listed}
    return document


def _write_status_page(path: Path, config: Config, rows: Sequence[tuple[str, AccountStatus]]) -> None:
    from datetime import UTC, datetime

    from loginwatch_org.status_html import render_status_html

    stamp = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    page = render_status_html(
        rows, config.forward_regions(), title=f"loginwatch coverage: {config.stack_set.name}", generated_at=stamp
    )
    path.write_text(page, encoding="utf-8")
    accounts = len({row.account_id for _, row in rows})
    typer.echo(f"wrote {path}: {accounts} account(s), {len(page.encode('utf-8')):,} bytes", err=True)


def _suppressed_by_account(senders: Sequence[SesSender], shared: bool) -> dict[str | None, dict[str, str]]:
    """Suppressed recipients by the account whose alerts they miss (None: every account's, when one identity sends
    for all)."""
    found: dict[str | None, dict[str, str]] = {}
    for sender in senders:
        if isinstance(sender.suppressed, Mapping):
            found.setdefault(None if shared else sender.account, {}).update(sender.suppressed)
    return found


def _print_plan(plan: Plan | DeploymentPlan) -> None:
    from loginwatch_org.render import colour_plan_lines, render_deployment_plan, render_plan
    from loginwatch_org.units import DeploymentPlan

    colour = use_colour()
    text = render_deployment_plan(plan) if isinstance(plan, DeploymentPlan) else render_plan(plan)
    # Fitted before it is coloured: escape codes take no room on the screen.
    text = fit(text, terminal_width())
    # click strips escape codes from what is not a terminal; the decision was made here, NO_COLOR included.
    typer.echo(colour_plan_lines(text) if colour else text, color=colour or None)


def _plan_document(plan: DeploymentPlan) -> dict[str, Any]:
    """Every unit under ``units``; the member watch stack set's plan also at the top level, where scripts
    written before there were several units read it. ``has_changes`` counts every unit."""
    watch = plan.unit("watch")
    return {**(watch.plan.to_dict() if watch else {}), **plan.to_dict()}


def _print_status(rows: list[AccountStatus], wide: bool = False, drift: bool = False) -> None:
    from loginwatch_org.render import render_status

    typer.echo(render_status(rows, width=None if wide else terminal_width(), drift=drift))


@app.command(VALIDATE_COMMAND)
@boundary
def validate(config: ConfigOption = DEFAULT_CONFIG_PATH, as_json: JsonOption = False) -> None:
    """Check the accounts file; exit 2 with every problem (file, line, field) if it is invalid."""
    from loginwatch_org.validation import Validation

    validation = Validation(config, load(config))
    if as_json:
        _emit_json(validation.document())
        return
    for line in validation.lines():
        typer.echo(fit(line, terminal_width()))


_EXTENSIONS = {".json": TemplateFormat.json, ".yaml": TemplateFormat.yaml, ".yml": TemplateFormat.yaml}


def _export_format(fmt: TemplateFormat | None, output: Path | None) -> TemplateFormat:
    """--format, or the output file's extension, or YAML; a --format that contradicts the extension is refused."""
    inferred = _EXTENSIONS.get(output.suffix.lower()) if output is not None else None
    if fmt is not None and inferred is not None and fmt != inferred:
        raise UsageError(
            f"--format {fmt.value} does not match {output}; drop --format (the extension decides) or name a "
            f".{fmt.value} file"
        )
    return fmt or inferred or TemplateFormat.yaml


def _export_command(config: Path, template: str, output: Path) -> str:
    """The command that writes ``template`` to ``output``, in the format its extension says."""
    parts = ["loginwatch-org", "export"]
    if config != DEFAULT_CONFIG_PATH:
        parts += ["-c", str(config)]
    if template != "watch":
        parts += ["--template", template]
    return " ".join([*parts, "-o", str(output)])


@app.command()
@boundary
def export(
    config: ConfigOption = DEFAULT_CONFIG_PATH,
    fmt: Annotated[
        TemplateFormat | None,
        typer.Option("--format", "-f", help="Default: the --output file's extension, else yaml."),
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write (default: stdout).")] = None,
    template: Annotated[str, typer.Option("--template", "-t", help="Which template (see --check).")] = "watch",
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Exit 1 with a diff if --output, or any committed file under templates/, is not current.",
        ),
    ] = False,
) -> None:
    """Write a CloudFormation template the tool deploys (by default the watch each account receives)."""
    import difflib

    from loginwatch_org.templates import REGISTRY, TEMPLATE_BODY_LIMIT, TEMPLATE_URL_LIMIT, render, template_body

    chosen_format = _export_format(fmt, output)
    if template not in REGISTRY:
        raise UsageError(f"--template must be one of {', '.join(REGISTRY)}, not '{template}'")
    loaded = load(config)
    built = {}
    for name, spec in REGISTRY.items():
        if name == template or (check and output is None):
            built[name] = spec.build(loaded)
            size = len(template_body(built[name]).encode("utf-8"))
            if size > TEMPLATE_URL_LIMIT:
                raise LoginwatchError(
                    f"the {name} template body is {size:,} bytes; CloudFormation reads at most "
                    f"{TEMPLATE_URL_LIMIT:,} from S3"
                )
    if check:
        targets = [(template, output, chosen_format)] if output is not None else _committed_files(fmt)
        stale: list[str] = []
        for name, path, path_format in targets:
            text = render(built[name], path_format.literal)
            current = path.read_text(encoding="utf-8") if path.exists() else None
            regenerate = _export_command(config, name, path)
            if current is None:
                stale.append(f"{path} does not exist; write it with: {regenerate}")
            elif current != text:
                diff = difflib.unified_diff(
                    current.splitlines(keepends=True), text.splitlines(keepends=True), str(path), "generated"
                )
                sys.stdout.writelines(diff)
                stale.append(f"{path} is stale; regenerate it with: {regenerate}")
            else:
                typer.echo(f"{path} is current.")
        if stale:
            raise LoginwatchError("; ".join(stale))
        return
    text = render(built[template], chosen_format.literal)
    if output is None:
        sys.stdout.write(text)
        return
    if output.is_dir():
        raise LoginwatchError(
            f"--output {output} is a directory; name the file, e.g. {output / f'{template}.{chosen_format.value}'}"
        )
    if not output.parent.is_dir():
        # As a shell redirection would: a mistyped directory must not quietly become a new one.
        raise UsageError(f"--output {output}: the directory {output.parent} does not exist; create it first")
    output.write_text(text, encoding="utf-8")
    body = len(template_body(built[template]).encode("utf-8"))
    carried = (
        f"{body:,} of the {TEMPLATE_BODY_LIMIT:,} bytes a template body may have"
        if body <= TEMPLATE_BODY_LIMIT
        else f"{body:,} bytes, more than the {TEMPLATE_BODY_LIMIT:,} a body may have inline, so rollout stages "
        "it in S3 and passes its URL"
    )
    typer.echo(
        f"wrote {output}: {len(text.encode('utf-8')):,} bytes of {chosen_format.value}, for review; "
        f"CloudFormation receives it as minified JSON, {carried}",
        err=True,
    )


def _committed_files(fmt: TemplateFormat | None) -> list[tuple[str, Path, TemplateFormat]]:
    """Each registered template's committed export(s): the --format one, else every format that exists (the
    YAML one when none does, so a missing file is reported with the command that writes it)."""
    from loginwatch_org.templates import REGISTRY

    files: list[tuple[str, Path, TemplateFormat]] = []
    for name, spec in REGISTRY.items():
        formats = [fmt] if fmt is not None else [f for f in TemplateFormat if spec.path(f.literal).exists()]
        for chosen in formats or [TemplateFormat.yaml]:
            files.append((name, spec.path(chosen.literal), chosen))
    return files


@app.command()
@boundary
def plan(
    config: ConfigOption = DEFAULT_CONFIG_PATH,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan (or the error) as JSON.")] = False,
    detailed_exitcode: Annotated[
        bool, typer.Option("--detailed-exitcode", help="Exit 0: no changes, 2: changes pending, 1: error.")
    ] = False,
    prune: Annotated[
        bool,
        typer.Option("--prune", help="Plan to delete instances and stacks of accounts no longer listed."),
    ] = False,
    only: OnlyOption = None,
    profile: ProfileOption = None,
    region: RegionOption = None,
    endpoint_url: EndpointOption = None,
    sandbox: SandboxOption = False,
) -> None:
    """Show what a rollout would change in every unit, without changing anything."""
    from loginwatch_org.workflow import Pacing, prepare_units

    # With --detailed-exitcode, 2 means "changes pending": the boundary reports every error as 1.
    options = _aws_options(profile, region, endpoint_url, sandbox)
    loaded = load(config)
    progress = Progress()
    with connect(loaded, options, progress) as clients:
        state = prepare_units(loaded, clients, only=only_units(only), prune=prune, pacing=Pacing(progress=progress))
    progress.pause()
    plan = state.plan
    if as_json:
        _emit_json(_plan_document(plan))
    else:
        _print_plan(plan)
    pending = sum(len(s.snapshot.pending_operations) for _, s in state.units if s.snapshot is not None)
    if pending:
        typer.echo(
            f"Note: {pending} operation(s) of an earlier run are still pending; "
            "rollout waits for them before planning again.",
            err=True,
        )
    if detailed_exitcode and plan.has_changes:
        raise typer.Exit(EXIT_CHANGES_PENDING)


@app.command()
@boundary
def rollout(
    config: ConfigOption = DEFAULT_CONFIG_PATH,
    yes: YesOption = False,
    prune: Annotated[
        bool, typer.Option("--prune", help="Delete instances and stacks of accounts no longer listed.")
    ] = False,
    only: OnlyOption = None,
    as_json: JsonOption = False,
    profile: ProfileOption = None,
    region: RegionOption = None,
    endpoint_url: EndpointOption = None,
    sandbox: SandboxOption = False,
) -> None:
    """Make every unit match the config: plan, confirm, apply, report each account and stack."""
    options = _aws_options(profile, region, endpoint_url, sandbox)
    loaded = load(config)
    progress = Progress()
    with connect(loaded, options, progress) as clients:
        _rollout(loaded, clients, yes=yes, prune=prune, as_json=as_json, progress=progress, only=only_units(only))


def _rollout(
    loaded: Config,
    clients: Clients,
    *,
    yes: bool,
    prune: bool,
    as_json: bool = False,
    progress: Progress,
    only: list[str] | None = None,
) -> bool:
    """Plan, confirm and apply; returns whether anything changed (and a per-account table was printed)."""
    from loginwatch_org.aws.executor import ApplyResult
    from loginwatch_org.render import render_result
    from loginwatch_org.workflow import Pacing, apply_units, prepare_units, read_snapshot

    pacing = Pacing(progress=progress)
    state = prepare_units(loaded, clients, only=only, prune=prune, wait=True, pacing=pacing)
    progress.pause()
    plan = state.plan
    resumed = [op for _, unit in state.units for op in unit.resumed]
    waited_for = [op for _, unit in state.units for op in unit.waited_for]
    document: dict[str, Any] = {
        "plan": _plan_document(plan),
        "resumed": [asdict(operation) for operation in resumed],
        "waited_for": [asdict(operation) for operation in waited_for],
    }
    if not as_json:
        if resumed:
            typer.echo("Operations an earlier, interrupted run had submitted:")
            typer.echo(render_result(ApplyResult(operations=resumed)))
        if waited_for:
            typer.echo("Operations by someone else that the rollout waited for before planning:")
            typer.echo(render_result(ApplyResult(operations=waited_for)))
        _print_plan(plan)
    if not plan.has_changes:
        if as_json:
            _emit_json({**document, "applied": False})
        return False
    if not _confirm(yes, "rollout", "Apply this plan?", as_json):
        raise _declined(as_json, document)
    outcomes = apply_units(loaded, clients, state, pacing)
    watch = state.state("watch")
    watch_outcome = next((o for o in outcomes if o.key == "watch"), None)
    rows: list[AccountStatus] = []
    if watch is not None:
        snapshot = (
            watch_outcome.snapshot if watch_outcome and watch_outcome.snapshot else read_snapshot(loaded, clients)
        )
        rows = _statuses(loaded, snapshot)
    progress.pause()
    problems = _unit_problems(outcomes)
    watch_plan = state.stack_set_plan("watch")
    skipped = set(watch_plan.skipped_accounts) if watch_plan is not None else set()
    configured = {t.account_id for t in loaded.targets()} - skipped
    failure = (
        LoginwatchError(
            f"{len(problems)} account(s) are not as the config says; fix the cause and run the rollout again."
        )
        if problems
        else None
    )
    if as_json:
        document.update(
            applied=True,
            operations=[
                asdict(op) for op in (watch_outcome.result.operations if watch_outcome and watch_outcome.result else [])
            ],
            notes=[note for o in outcomes if o.result for note in o.result.notes],
            accounts=[_row_document(row) for row in rows],
            not_converged=dict(sorted(problems.items())),
            units=[_outcome_document(outcome) for outcome in outcomes],
        )
        if failure is not None:
            document.update(error_document(failure, EXIT_ERROR))
        _emit_json(document)
        if failure is not None:
            raise typer.Exit(EXIT_ERROR)
        return True
    _print_outcomes(outcomes)
    if rows:
        _print_status(rows)
    if failure is not None:
        typer.echo("Not converged:", err=True)
        for account_id, why in sorted(problems.items()):
            typer.echo(f"  {account_id}: {why}", err=True)
        raise failure
    if watch is not None:
        typer.echo(f"Rollout complete: {len(configured)} account(s) current.")
    else:
        typer.echo(f"Rollout complete: {', '.join(o.key for o in outcomes)} as the config says.")
    return True


def _unit_problems(outcomes: list[UnitOutcome]) -> dict[str, str]:
    """What every unit left unlike the plan; an account that several units got wrong is named once per unit
    after the first (the watch's reason comes first)."""
    problems: dict[str, str] = {}
    for outcome in outcomes:
        for key, why in outcome.problems.items():
            if key in problems:
                problems[key] += f"; {outcome.key}: {why}"
            else:
                problems[key] = why if outcome.key == "watch" else f"{outcome.key}: {why}"
    return problems


def _outcome_document(outcome: UnitOutcome) -> dict[str, Any]:
    return {
        "unit": outcome.key,
        "operations": [asdict(op) for op in outcome.result.operations] if outcome.result else [],
        "stacks": [asdict(result) for result in outcome.stacks],
        "not_converged": dict(sorted(outcome.problems.items())),
    }


def _print_outcomes(outcomes: list[UnitOutcome]) -> None:
    from loginwatch_org.render import render_result, render_stack_results

    for outcome in outcomes:
        text = render_result(outcome.result) if outcome.result is not None else render_stack_results(outcome.stacks)
        if text:
            typer.echo(fit(text, terminal_width()))


@app.command()
@boundary
def status(
    config: ConfigOption = DEFAULT_CONFIG_PATH,
    as_json: Annotated[bool, typer.Option("--json", help="Print the rows (or the error) as JSON.")] = False,
    drift: Annotated[bool, typer.Option("--drift", help="Run stack set drift detection first.")] = False,
    wide: Annotated[bool, typer.Option("--wide", help="Every column, however wide the terminal.")] = False,
    html_file: Annotated[
        Path | None,
        typer.Option(
            "--html", metavar="FILE", help="Also write a self-contained page of coverage, accounts by Region."
        ),
    ] = None,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify",
            help="Describe every instance and compare its real overrides with the config (one call each); with "
            "every account sending for itself, also read each account's SES suppression list.",
        ),
    ] = False,
    only: OnlyOption = None,
    member_role: MemberRoleOption = DEFAULT_MEMBER_ROLE,
    profile: ProfileOption = None,
    region: RegionOption = None,
    endpoint_url: EndpointOption = None,
    sandbox: SandboxOption = False,
) -> None:
    """One row per account and unit: deployed status and recipients beside the config."""
    from loginwatch_org.aws.prerequisites import read_senders
    from loginwatch_org.doctor import suppression_result
    from loginwatch_org.workflow import (
        Pacing,
        detect_drift,
        drift_problems,
        make_executor,
        management_status,
        prepare_units,
        read_snapshot,
        stack_set_units,
        watched_accounts,
    )

    if html_file is not None and not html_file.parent.is_dir():
        # Said before anything is read: a page that cannot be written is not worth the calls.
        raise UsageError(f"--html {html_file}: the directory {html_file.parent} does not exist")
    options = _aws_options(profile, region, endpoint_url, sandbox)
    loaded = load(config)
    units = only_units(only)
    progress = Progress()
    with connect(loaded, options, progress) as clients:
        watched_unit = units is None or "watch" in units
        # --drift: each stack set's detection first (one after the other, each an operation of its own), so that
        # the instances read below carry its results.
        detections = {
            unit.key: detect_drift(loaded, clients, make_executor(loaded, clients, progress=progress, unit=unit), unit)
            for unit in (stack_set_units(loaded, units) if drift else [])
        }
        detection = detections.get("watch")
        state = prepare_units(loaded, clients, only=units, pacing=Pacing(progress=progress))
        # --verify: the watch's instances described one by one, whatever their LastOperationId claims.
        verified = read_snapshot(loaded, clients, verify=True) if verify and watched_unit else None
        # Recipients SES would silently drop: read where mail is sent from (every account only with --verify).
        senders = (
            read_senders(loaded, clients.target, member_role, each_account=verify)
            if watched_unit and clients.target is not None
            else None
        )
    progress.pause()
    suppression = suppression_result(senders or ())
    suppressed = _suppressed_by_account(senders or (), shared=loaded.delivery.ses_identity_arn is not None)
    watch = state.state("watch")
    if watch is not None and watch.snapshot is not None and watch.snapshot.stack_set is None:
        raise LoginwatchError(
            f"stack set '{loaded.stack_set.name}' does not exist yet; run: {suggest.command('rollout')}"
        )
    rows: list[tuple[str, AccountStatus]] = []
    current_forwarders: list[tuple[str, AccountStatus]] = []
    outside: frozenset[str] = frozenset()
    watch_snapshot = verified or (watch.snapshot if watch is not None else None)
    if watch_snapshot is not None:
        outside = watch_snapshot.accounts_outside_organization
        rows.extend(("watch", row) for row in _statuses(loaded, watch_snapshot, detection))
    attention: list[str] = []
    notes: list[str] = []
    forwarders = state.stack_set_plan("forwarders")
    if forwarders is not None:
        wrong = state.unit_problems(loaded, "forwarders", detections.get("forwarders"))
        names = loaded.account_names()
        for account_id, why in sorted(wrong.items()):
            rows.append(("forwarders", _forwarder_row(account_id, names.get(account_id, ""), why)))
        attention.extend(wrong)
        covered = [t.account_id for t in loaded.targets() if t.account_id not in outside and t.account_id not in wrong]
        current = len(covered)
        # A script or the page asks about every account's forwarders; the table names only those that need
        # attention.
        regions = len(loaded.forward_regions())
        current_forwarders = [
            ("forwarders", _forwarder_row(account_id, names.get(account_id, ""), f"current in {regions} region(s)",
                                          status="CURRENT"))
            for account_id in covered
        ]  # fmt: skip
        if as_json:
            rows.extend(current_forwarders)
        notes.append(
            f"Forwarders (stack set {forwarders.stack_set}, {len(loaded.forward_regions())} region(s)): "
            f"{current} account(s) current" + (f", {len(wrong)} not" if wrong else "") + "."
        )
    for key in ("management", "mail"):
        unit_state = state.state(key)
        stacks = state.stacks_plan(key)
        if unit_state is None or stacks is None:
            continue
        row = management_status(loaded, unit_state)
        if row is not None:
            rows.append((key, row))
            if stacks.not_covered is None and not row.in_sync:
                attention.append(key)
    if html_file is not None:
        _write_status_page(html_file, loaded, rows if as_json else [*rows, *current_forwarders])
    if as_json:
        _emit_json([_row_document(row, unit, suppressed) for unit, row in rows])
    else:
        for account_id in sorted(outside):
            typer.echo(f"! {_outside_reason(account_id)}", err=True)
        _print_status([row for _, row in rows], wide=wide, drift=drift)
        # A summary beside the table, like the warnings: stdout holds the table alone.
        for text in notes:
            typer.echo(fit(text, terminal_width()), err=True)
        if suppression is not None and suppression.status == "fail":
            typer.echo(fit(f"! {suppression.detail}. Fix: {suppression.fix}.", terminal_width()), err=True)
        elif suppression is not None and suppression.status != "pass":
            typer.echo(fit(f"Warning: suppression list not read: {suppression.detail}", terminal_width()), err=True)
    for key, result in detections.items():
        for problem in drift_problems(result):
            typer.echo(f"Warning: {key}: {problem}", err=True)
    # Non-zero when anything needs attention, so status can gate a pipeline or feed a monitor. Accounts the
    # organisation lacks are skipped by rollout, and so they are here; a unit these credentials cannot reach is
    # reported, not counted.
    watched = watched_accounts(loaded, watch_snapshot) if watch_snapshot is not None else set()
    needing = sorted({row.account_id for unit, row in rows if unit == "watch" and row.account_id in watched
                      and row.needs_attention} | {key for key in attention})  # fmt: skip
    incomplete = [key for key, result in detections.items() if result.status != "NOT_RUN" and not result.complete]
    silenced = suppression is not None and suppression.status == "fail"
    if needing or incomplete or silenced:
        if not as_json:
            # Say why the exit status is 1: a pipeline's log shows this line, not the table's meaning.
            reasons: list[str] = []
            if needing:
                shown = ", ".join(needing[:5]) + (f" and {len(needing) - 5} more" if len(needing) > 5 else "")
                reasons.append(f"{len(needing)} need attention ({shown})")
            if incomplete:
                reasons.append(f"drift detection did not complete for {', '.join(incomplete)}")
            if silenced:
                reasons.append("recipients on the SES suppression list get no alert")
            typer.echo(f"Exit 1: {'; '.join(reasons)}. {suggest.command('plan')} shows what a rollout would change.",
                       err=True)  # fmt: skip
        raise typer.Exit(EXIT_ERROR)


def _forwarder_row(account_id: str, name: str, why: str, *, status: str = "NOT_CURRENT") -> AccountStatus:
    from loginwatch_org.workflow import AccountStatus

    return AccountStatus(account_id, name, "forward regions", status, "", why, None, None, None, None, "", "")


@app.command()
@boundary
def remove(
    config: ConfigOption = DEFAULT_CONFIG_PATH,
    yes: YesOption = False,
    retain_stacks: Annotated[
        bool, typer.Option("--retain-stacks", help="Detach the stacks from the stack set but keep them.")
    ] = False,
    account: Annotated[
        list[str] | None, typer.Option("--account", help="Only these accounts (repeatable); default: all.")
    ] = None,
    only: OnlyOption = None,
    as_json: JsonOption = False,
    profile: ProfileOption = None,
    region: RegionOption = None,
    endpoint_url: EndpointOption = None,
    sandbox: SandboxOption = False,
) -> None:
    """Delete every unit's stack instances (all, or --account ones), its stack sets once empty, and the plain
    stacks of the management and mail accounts (not with --account)."""
    from loginwatch_org.workflow import Pacing, apply_units, prepare_removal

    bad = [value for value in account or () if not _ACCOUNT_ID.match(value)]
    if bad:
        raise UsageError(f"--account {bad[0]}: an AWS account id is exactly 12 digits")
    options = _aws_options(profile, region, endpoint_url, sandbox)
    loaded = load(config)
    progress = Progress()
    with connect(loaded, options, progress) as clients:
        state = prepare_removal(
            loaded, clients, only=only_units(only), accounts=tuple(account or ()), retain_stacks=retain_stacks
        )
        progress.pause()
        removal = state.plan
        document: dict[str, Any] = {"plan": _plan_document(removal)}
        watch = state.state("watch")
        if not removal.has_changes and watch is not None and watch.snapshot and watch.snapshot.stack_set is None:
            if as_json:
                _emit_json({"stack_set": loaded.stack_set.name, "exists": False, "applied": False, **document})
            else:
                _print_plan(removal)
                typer.echo(f"Stack set '{loaded.stack_set.name}' does not exist; nothing to remove.")
            return
        if not as_json:
            _print_plan(removal)
        if not removal.has_changes:
            if as_json:
                _emit_json({**document, "applied": False})
            return
        if not _confirm(yes, "remove", "Delete these stack instances and stacks?", as_json):
            raise _declined(as_json, document)
        outcomes = apply_units(loaded, clients, state, Pacing(progress=progress), removing=True)
        progress.pause()
    problems = _unit_problems(outcomes)
    failure = (
        LoginwatchError("some instances could not be deleted (see above); run remove again after fixing the cause")
        if problems
        else None
    )
    watch_outcome = next((o for o in outcomes if o.key == "watch"), None)
    if as_json:
        document.update(
            applied=True,
            operations=[
                asdict(op) for op in (watch_outcome.result.operations if watch_outcome and watch_outcome.result else [])
            ],
            units=[_outcome_document(outcome) for outcome in outcomes],
        )
        if failure is not None:
            document.update(error_document(failure, EXIT_ERROR))
        _emit_json(document)
        if failure is not None:
            raise typer.Exit(EXIT_ERROR)
        return
    _print_outcomes(outcomes)
    if failure is not None:
        raise failure


@app.command()
@boundary
def doctor(
    config: ConfigOption = DEFAULT_CONFIG_PATH,
    as_json: JsonOption = False,
    member_role: MemberRoleOption = DEFAULT_MEMBER_ROLE,
    profile: ProfileOption = None,
    region: RegionOption = None,
    endpoint_url: EndpointOption = None,
    sandbox: SandboxOption = False,
) -> None:
    """Check, read-only, what real AWS needs for alerts to arrive; exit 1 unless every check passes."""
    from loginwatch_org.aws.prerequisites import gather
    from loginwatch_org.doctor import all_passed, evaluate, render_json, render_text

    options = _aws_options(profile, region, endpoint_url, sandbox)
    loaded = load(config)
    with aws_target(loaded, options, note) as target:
        facts = gather(loaded, target, member_role)
    results = evaluate(loaded, facts)
    typer.echo(render_json(results) if as_json else fit(render_text(results), terminal_width()))
    if not all_passed(results):
        raise typer.Exit(EXIT_ERROR)


@app.command("test-alert")
@boundary
def test_alert(
    account: Annotated[str | None, typer.Argument(help="The watched account to send a test alert to.")] = None,
    all_accounts: Annotated[bool, typer.Option("--all", help="Send one to every watched account.")] = False,
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait for the outcome: read the notifier's log and dead-letter queue.")
    ] = False,
    timeout: Annotated[float, typer.Option(min=0, help="Seconds --wait waits for each test alert.")] = 300.0,
    member_role: MemberRoleOption = DEFAULT_MEMBER_ROLE,
    as_json: JsonOption = False,
    config: ConfigOption = DEFAULT_CONFIG_PATH,
    profile: ProfileOption = None,
    region: RegionOption = None,
    endpoint_url: EndpointOption = None,
    sandbox: SandboxOption = False,
) -> None:
    """Send a [TEST] alert through ACCOUNT's watch (or --all); exit 1 unless each one was delivered."""
    from loginwatch_org.alert_check import all_succeeded, render_json, render_text
    from loginwatch_org.aws.test_alert import Waiting, send_test_alerts

    options = _aws_options(profile, region, endpoint_url, sandbox)
    if (account is None) == (not all_accounts):
        raise UsageError("name one watched ACCOUNT or pass --all")
    loaded = load(config)
    # The management account's own watch (a plain stack) is tested like the members' watches.
    chosen = _watched_accounts(loaded, config, [account] if account is not None else None)
    waiting = Waiting.in_sandbox() if sandbox else Waiting(timeout=timeout) if wait else None
    with aws_target(loaded, options, note) as target:
        alerts = send_test_alerts(loaded, target, chosen, wait=waiting, member_role=member_role, progress=note)
        emails = _test_emails(target.endpoint_url, alerts) if sandbox else []
    typer.echo(render_json(alerts) if as_json else fit(render_text(alerts, loaded.account_names()), terminal_width()))
    # One email in full is the sample a reader wants; the rest differ only in the account, so a line each.
    for index, sent in enumerate([] if as_json else emails):
        if index == 0:
            typer.echo(f"\nEmail accepted by SES (message {sent['message_id']}):\n  Subject: {sent['subject']}")
            typer.echo("\n".join(f"  | {line}" for line in (sent["text"] or "").splitlines()))
        else:
            if index == 1:
                typer.echo("\nThe other emails accepted by SES:")
            typer.echo(fit(f"  {sent['message_id']}  {sent['subject']}", terminal_width()))
    if not all_succeeded(alerts):
        raise typer.Exit(EXIT_ERROR)


@app.command("dead-letters")
@boundary
def dead_letters(
    accounts: Annotated[list[str] | None, typer.Argument(help="Watched accounts to read (or --all).")] = None,
    all_accounts: Annotated[bool, typer.Option("--all", help="Read every watched account.")] = False,
    replay: Annotated[
        bool, typer.Option("--replay", help="Send each alert through its notifier again; delete it once sent.")
    ] = False,
    member_role: MemberRoleOption = DEFAULT_MEMBER_ROLE,
    as_json: JsonOption = False,
    config: ConfigOption = DEFAULT_CONFIG_PATH,
    profile: ProfileOption = None,
    region: RegionOption = None,
    endpoint_url: EndpointOption = None,
    sandbox: SandboxOption = False,
) -> None:
    """List the alerts waiting in the watches' and forwarders' dead-letter queues; exit 1 if any wait."""
    from loginwatch_org.aws.dead_letters import read_dead_letters
    from loginwatch_org.config import WATCH_REGION
    from loginwatch_org.dead_letters import document, render_text, waiting_total

    options = _aws_options(profile, region, endpoint_url, sandbox)
    if bool(accounts) == all_accounts:
        raise UsageError("name the watched ACCOUNT(s) to read, or pass --all")
    loaded = load(config)
    chosen = _watched_accounts(loaded, config, accounts or None)
    regions = (WATCH_REGION, *loaded.forward_regions())
    with aws_target(loaded, options, note) as target:
        readings = read_dead_letters(loaded, target, chosen, replay=replay, member_role=member_role, progress=note)
    if as_json:
        _emit_json(document(readings, len(chosen), regions))
    else:
        text = render_text(readings, loaded.account_names(), len(chosen), len(regions), replayed=replay)
        typer.echo(fit(text, terminal_width()))
    unreadable = [r for r in readings if r.unreadable]
    if waiting_total(readings) or unreadable:
        if not as_json:
            reasons = [f"{waiting_total(readings)} alert(s) still wait"] if waiting_total(readings) else []
            reasons += [f"{len(unreadable)} queue(s) or Region(s) could not be read"] if unreadable else []
            named = " ".join(accounts or ["--all"])
            hint = "" if replay else f" {suggest.command(f'dead-letters {named} --replay')} sends them again."
            typer.echo(f"Exit 1: {'; '.join(reasons)}.{hint}", err=True)
        raise typer.Exit(EXIT_ERROR)


def _watched_accounts(loaded: Config, config: Path, named: list[str] | None) -> list[str]:
    """The accounts with a watch (the members and the management account), or those named, each checked."""
    management = loaded.management_watch()
    watched = [target.account_id for target in loaded.targets()] + ([management.account_id] if management else [])
    for account in named or []:
        if account not in watched:
            raise UsageError(
                f"account '{account}' is not watched by {config}: list it under accounts (enabled), or name it as "
                "management_account"
            )
    return list(named) if named else watched


def _test_emails(endpoint_url: str | None, alerts: list[Any]) -> list[Any]:
    """The sandbox's copies of the emails the test alerts produced, each once with all its recipients."""
    from loginwatch_org.sandbox.mailbox import one_per_email, read_mailbox

    wanted = {i for alert in alerts if alert.evidence for i in alert.evidence.ses_message_ids}
    return one_per_email([m for m in read_mailbox(endpoint_url or "", None) if m["message_id"] in wanted])


sandbox_app = typer.Typer(
    help="A local AWS emulator on 127.0.0.1 holding the config's organisation.", rich_markup_mode=None
)
app.add_typer(sandbox_app, name="sandbox")


@sandbox_app.command("up")
@boundary
def sandbox_up(config: ConfigOption = DEFAULT_CONFIG_PATH) -> None:
    """Start a sandbox that outlives this command (commands with --sandbox then use it)."""
    from loginwatch_org.sandbox import control

    loaded = load(config)
    sandbox, started = control.up(loaded)
    verb = "started" if started else "already running"
    typer.echo(
        f"Sandbox {verb} at {sandbox.endpoint_url} (pid {sandbox.pid}): management account "
        f"{sandbox.management_account}, {len(sandbox.accounts) - 1} member account(s). Stop it with: "
        "loginwatch-org sandbox down"
    )


@sandbox_app.command("down")
@boundary
def sandbox_down() -> None:
    """Stop the sandbox started with 'sandbox up'; everything in it is gone."""
    from loginwatch_org.sandbox import control

    stopped = control.down()
    typer.echo(f"Sandbox at {stopped.endpoint_url} stopped." if stopped else "No sandbox is running.")


@sandbox_app.command("status")
@boundary
def sandbox_status() -> None:
    """Say where the sandbox runs, if it does (exit 1 if none)."""
    from loginwatch_org.sandbox import control

    sandbox = control.running()
    if sandbox is None:
        typer.echo("No sandbox is running. Start one with: loginwatch-org sandbox up")
        raise typer.Exit(EXIT_ERROR)
    typer.echo(
        f"Sandbox running at {sandbox.endpoint_url} (pid {sandbox.pid}), state in {sandbox.state_file}; "
        f"management account {sandbox.management_account}, {len(sandbox.accounts) - 1} member account(s)."
    )


@app.command("simulate-login")
@boundary
def simulate_login(
    account: Annotated[str, typer.Argument(help="The member account id that someone signs in to.")],
    identity: IdentityOption = Identity.root,
    config: ConfigOption = DEFAULT_CONFIG_PATH,
    sandbox: SandboxOption = False,
    signin_region: Annotated[
        str,
        typer.Option(
            "--region", help="The region CloudTrail records the sign-in in (others reach the watch by forwarder)."
        ),
    ] = "us-east-1",
    count: Annotated[
        int, typer.Option("--count", min=1, max=1000, help="Sign in this many times at once: a burst, or an attack.")
    ] = 1,
    wait: Annotated[
        float,
        typer.Option(
            "--wait",
            min=0,
            help="Seconds to wait for the watch's buffer to empty (held-back and throttled alerts take longer).",
        ),
    ] = 90.0,
    as_json: JsonOption = False,
) -> None:
    """Sign in to ACCOUNT's console in the sandbox and print the email SES accepted."""
    if not sandbox:
        raise UsageError("simulate-login only runs in the sandbox (pass --sandbox): real sign-in events come from AWS")
    from loginwatch_org.config import AWS_REGIONS

    loaded = load(config)
    if signin_region not in AWS_REGIONS:
        raise UsageError(f"--region {signin_region} is not an AWS region")
    with _sandbox_session(loaded) as running:
        _simulate(loaded, running, account, identity, signin_region, as_json=as_json, count=count, wait=wait)


def _simulate(
    loaded: Config,
    running: Any,
    account: str,
    identity: Identity,
    region: str = "us-east-1",
    *,
    as_json: bool = False,
    count: int = 1,
    wait: float = 90.0,
) -> None:
    from loginwatch_org.sandbox.simulate import signins_covered, simulate_login
    from loginwatch_org.templates.watch import alert_topic_name

    if account not in running.accounts:
        raise UsageError(f"account {account} is not in the sandbox's organisation")
    names = loaded.account_names()
    label = f"{account} ({names[account]})" if account in names else account
    outcome = simulate_login(
        running,
        account,
        identity.value,
        region=region,
        watch_topic=alert_topic_name(loaded),
        count=count,
        wait_seconds=wait,
    )
    if as_json:
        _emit_json(
            {
                "account": account,
                "name": names.get(account, ""),
                "identity": identity.value,
                "region": region,
                "signins_sent": outcome.signins,
                "emailed": bool(outcome.emails),
                "dead_lettered": outcome.dead_lettered,
                "still_buffered": outcome.still_buffered,
                "signins_covered": outcome.signins_covered,
                "why_no_email": None if outcome.emails else outcome.why_no_email(loaded, account),
                "emails": [
                    {
                        "message_id": sent["message_id"],
                        "from": sent["source"],
                        "to": list(sent["to"]),
                        "subject": sent["subject"],
                        "signins_covered": signins_covered(sent["subject"]),
                        "text": sent["text"] or "",
                    }
                    for sent in outcome.emails
                ],
            }
        )
        return
    if count > 1:
        covered = outcome.signins_covered
        typer.echo(
            f"Simulated {count} {identity.value} console sign-ins to {label}, recorded in {region}: "
            f"{len(outcome.emails)} email(s) accepted by SES covering {covered} sign-in(s), "
            f"{outcome.dead_lettered} alert(s) dead-lettered, {outcome.still_buffered} still buffered."
        )
        if outcome.dead_lettered:
            typer.echo(f"Why: {outcome.why_no_email(loaded, account)}.")
        return
    typer.echo(f"Simulated {identity.value} console sign-in to {label}, recorded in {region}.")
    if not outcome.emails:
        typer.echo(f"No email was sent: {outcome.why_no_email(loaded, account)}.")
        return
    for sent in outcome.emails:
        typer.echo(
            f"Email accepted by SES (message {sent['message_id']}):\n"
            f"  From:    {sent['source']}\n"
            f"  To:      {', '.join(sent['to'])}\n"
            f"  Subject: {sent['subject']}\n"
        )
        typer.echo("\n".join(f"  | {line}" for line in (sent["text"] or "").splitlines()))


@contextmanager
def _sandbox_session(loaded: Config, keep: bool = False) -> Iterator[Any]:
    from loginwatch_org.sandbox import control

    with control.sandbox_session(loaded, progress=note, keep=keep) as running:
        yield running


@app.command()
@boundary
def demo(
    config: ConfigOption = DEFAULT_CONFIG_PATH,
    account: Annotated[str | None, typer.Option(help="Account to sign in to (default: the first watched).")] = None,
    identity: IdentityOption = Identity.root,
) -> None:
    """The main job in the sandbox: check, roll out, prove every watch with a test alert, show the coverage and
    the status, and follow two sign-ins to their emails."""
    from loginwatch_org.alert_check import render_text as render_test_alerts
    from loginwatch_org.aws.prerequisites import gather
    from loginwatch_org.aws.test_alert import Waiting, send_test_alerts
    from loginwatch_org.doctor import evaluate
    from loginwatch_org.doctor import render_text as render_checks
    from loginwatch_org.workflow import Pacing, prepare_units

    loaded = load(config)
    chosen = account or loaded.targets()[0].account_id
    progress = Progress()
    width = terminal_width()
    with _sandbox_session(loaded, keep=True) as running:
        target = replace(running.target(), region=loaded.stack_set.admin_region)
        clients = clients_for(target, progress)
        typer.echo(f"== 1. What AWS must provide, checked read-only (doctor), in the sandbox at {running.endpoint_url}")
        typer.echo(fit(render_checks(evaluate(loaded, gather(loaded, target, DEFAULT_MEMBER_ROLE))), width))
        typer.echo(f"\n== 2. Rollout of {config}: every unit the config wants")
        _rollout(loaded, clients, yes=True, prune=False, progress=progress)
        typer.echo("\n== 3. A test alert through every watch (test-alert --all): each one must reach SES")
        watched = _watched_accounts(loaded, config, None)
        alerts = send_test_alerts(loaded, target, watched, wait=Waiting.in_sandbox(), progress=note)
        typer.echo(fit(render_test_alerts(alerts, loaded.account_names()), width))
        typer.echo("\n== 4. Coverage: every account of the organisation, and what watches it")
        state = prepare_units(loaded, clients, pacing=Pacing(progress=progress))
        progress.pause()
        typer.echo(fit(_coverage_summary(loaded, state), width))
        typer.echo("As a page, accounts by Region: loginwatch-org status --sandbox --html coverage.html")
        typer.echo("\n== 5. status: a row per account and unit; exit 0 means nothing needs attention")
        try:
            status(config=config, sandbox=True)
            exit_code = 0
        except typer.Exit as stopped:
            exit_code = stopped.exit_code
        progress.pause()
        verdict = "every watched account is current and as the config says" if exit_code == 0 else "see why above"
        typer.echo(f"status exited {exit_code}: {verdict}")
        typer.echo("\n== 6. A console sign-in")
        _simulate(loaded, running, chosen, identity)
        # A failed IAM-user sign-in: every policy but root-only and no-mfa emails about it.
        typer.echo("\n== 7. An IAM user's failed sign-in, recorded in us-east-2 and forwarded to the watch")
        _simulate(loaded, running, chosen, Identity.failed, "us-east-2")


def _coverage_summary(loaded: Config, state: Any) -> str:
    """Who watches each account of the organisation, read back after the rollout, and whether anything is left
    to do: the lines that say the rollout covered what the config and the organisation hold."""
    from loginwatch_org.state import HEALTHY_STATUS

    lines: list[str] = []
    watch, forwarders = state.state("watch"), state.state("forwarders")
    snapshot = watch.snapshot if watch is not None else None
    organization = snapshot.organization if snapshot is not None else None
    names = loaded.account_names()
    if organization is not None:
        members = [account.account_id for account in organization.members()]
        lines.append(f"The organisation has {len(members)} member account(s) and the management account.")
    if snapshot is not None:
        current = sum(1 for i in snapshot.instances if i.status == HEALTHY_STATUS)
        lines.append(
            f"  watched: {len({i.account_id for i in snapshot.instances})} member account(s), by the stack set "
            f"{loaded.stack_set.name} in {', '.join(loaded.stack_set.regions)} ({current} instance(s) CURRENT)"
        )
    if forwarders is not None and forwarders.snapshot is not None:
        lines.append(
            f"  forwarded: sign-ins recorded in {len(loaded.forward_regions())} other Region(s) reach those watches "
            f"({len(forwarders.snapshot.instances)} forwarder instance(s))"
        )
    management = loaded.management_watch()
    if management is not None:
        lines.append(f"  management account {management.account_id} ({names.get(management.account_id, '?')}): "
                     "watched by its own stacks, its watch and a forwarder per Region")  # fmt: skip
    for account_id in sorted(loaded.disabled_account_ids()):
        lines.append(f"  not watched: {account_id} ({names.get(account_id, '?')}), enabled: false in the config")
    if loaded.delivery.mail_account is not None:
        lines.append(
            f"  sent by: the mail account {loaded.delivery.mail_account}, the only account that needs SES production "
            "access; dead-letter alarms are emailed from there"
        )
    plan = state.plan
    lines.append(
        "Every unit matches the config: a rollout now would change nothing."
        if not plan.has_changes
        else "Some units still differ from the config: run plan to see what."
    )
    return "\n".join(lines)


def main() -> None:
    from loginwatch_org.entry import main as run

    run()


if __name__ == "__main__":
    main()
