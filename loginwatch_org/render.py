"""Text a reviewer reads: plans, status tables and rollout results. Pure string building."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from loginwatch_org.aws.executor import ApplyResult
from loginwatch_org.plan import (
    AccountChange,
    CreateInstances,
    CreateStackSet,
    DeleteInstances,
    DeleteStackSet,
    Plan,
    UpdateInstances,
    UpdateStackSet,
)
from loginwatch_org.stack_plan import (
    CreateStack,
    DeleteStack,
    ReplaceFailedStack,
    StackPlan,
    UpdateStack,
    stack_label,
)
from loginwatch_org.templates import ALERT_POLICY_PARAMETER, RECIPIENTS_PARAMETER, TEMPLATE_BODY_LIMIT
from loginwatch_org.text import words
from loginwatch_org.text import wrap as wrap_text
from loginwatch_org.units import UNIT_TITLES, DeploymentPlan
from loginwatch_org.workflow import AccountStatus

# A wrapped column is never narrower than this (or than its widest cell, if that is less): past it, wrapping
# only adds rows.
MIN_WRAPPED_WIDTH = 14


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    width: int | None = None,
    optional: Sequence[str] = (),
    details: Sequence[str] = (),
    wrap: Sequence[str] = (),
    labels: Mapping[str, str] | None = None,
) -> str:
    """Columns padded to their widest cell. Given a ``width`` the table is made to fit it, in this order:
    ``optional`` columns are dropped (a note says which), ``details`` columns move, one after the other, to
    indented lines under their row (labelled by ``labels``, else the header), and ``wrap`` columns are wrapped.
    Wrapping breaks at spaces and after commas, never inside an address or id: a column is never narrower than
    its longest word."""
    cells = [[str(cell) for cell in row] for row in rows]
    columns = list(range(len(headers)))
    widths = {i: max([len(headers[i]), *(len(row[i]) for row in cells)]) for i in columns}

    def total() -> int:
        return sum(widths[i] for i in columns) + 2 * (len(columns) - 1)

    dropped: list[str] = []
    moved: list[int] = []
    if width is not None:
        for name in optional:
            if total() <= width:
                break
            columns.remove(headers.index(name))
            dropped.append(name)
        for name in details:
            if total() <= width:
                break
            moved.append(headers.index(name))
            columns.remove(moved[-1])
        for name in wrap:
            index = headers.index(name)
            if total() <= width or index not in columns:
                continue
            longest_word = max(len(word) for row in [headers, *cells] for word in words(row[index]) or [""])
            floor = max(min(widths[index], MIN_WRAPPED_WIDTH), longest_word)
            widths[index] = max(floor, widths[index] - (total() - width))

    def lines_of(row: Sequence[str]) -> list[str]:
        parts = [wrap_text(row[i], widths[i]) for i in columns]
        return [
            "  ".join(
                (part[line] if line < len(part) else "").ljust(widths[i])
                for i, part in zip(columns, parts, strict=True)
            ).rstrip()
            for line in range(max(len(part) for part in parts))
        ]

    out = lines_of(headers)
    out.append("  ".join("-" * widths[i] for i in columns))
    for row in cells:
        out.extend(lines_of(row))
        for index in moved:
            if row[index] not in ("", "-") and width is not None:
                label = f"{(labels or {}).get(headers[index], headers[index].lower())}: "
                wrapped = wrap_text(label + row[index], max(width - 4, 20))
                out.extend(f"    {line}" for line in wrapped)
    if dropped:
        note = f"({', '.join(dropped)} not shown, to fit {width} columns: --wide shows every column)"
        out.extend(wrap_text(note, width or len(note)))
    return "\n".join(out)


def _overrides(values: Mapping[str, str] | None) -> str:
    if values is None:
        return "(unknown)"
    if not values:
        return "no per-account values"
    return f"recipients={values.get(RECIPIENTS_PARAMETER, '?')} alert_on={values.get(ALERT_POLICY_PARAMETER, '?')}"


def _change_line(symbol: str, change: AccountChange) -> str:
    name = f" ({change.name})" if change.name else ""
    line = f"    {symbol} {change.account_id}{name}: {change.reason}"
    if change.before is not None and change.after is not None and change.before != change.after:
        line += f"\n        {_overrides(change.before)}\n     -> {_overrides(change.after)}"
    return line


# ANSI colours for plan lines by their symbol: what is added, changed, removed.
_COLOURS = {"+": "32", "~": "33", "-": "31"}


def colour_plan_lines(text: str) -> str:
    """Colour each line whose first symbol is +, ~ or -, terraform-style (the arrow continuation lines of a
    change keep the colour of their change)."""
    out: list[str] = []
    current: str | None = None
    for line in text.splitlines():
        stripped = line.lstrip()
        symbol = stripped[:1]
        if symbol in _COLOURS and stripped[1:2] == " ":
            current = _COLOURS[symbol]
        elif not (stripped.startswith("->") or (line.startswith("        ") and current)):
            current = None
        out.append(f"\x1b[{current}m{line}\x1b[0m" if current else line)
    return "\n".join(out)


def render_plan(plan: Plan, *, colour: bool = False) -> str:
    text = _plan_text(plan)
    return colour_plan_lines(text) if colour else text


def render_deployment_plan(plan: DeploymentPlan, *, colour: bool = False) -> str:
    """Every unit's plan, one block each, in the order a rollout applies them; a closing line over all units
    when there are several."""
    blocks: list[str] = []
    for unit in plan.units:
        if isinstance(unit.plan, Plan):
            blocks.append(_plan_text(unit.plan))
        else:
            blocks.append(_stack_plan_text(unit.plan, UNIT_TITLES[unit.key]))
    if len(plan.units) > 1:
        changed = [unit.key for unit in plan.units if unit.has_changes]
        uncovered = [unit.key for unit in plan.units if unit.not_covered]
        summary = (
            f"All units: changes in {', '.join(changed)}; {plan.operation_count} operation(s) and stack request(s)."
            if changed
            else "All units: no changes."
        )
        if uncovered:
            summary += f" Not covered by these credentials: {', '.join(uncovered)}."
        blocks.append(summary)
    if plan.cost is not None:
        blocks.append(plan.cost.summary())
    text = "\n".join(blocks)
    return colour_plan_lines(text) if colour else text


def _staging_note(what: str, body: str) -> list[str]:
    """A line saying the body goes through S3, when it is too large to send inline (see aws/staging.py)."""
    size = len(body.encode("utf-8"))
    if size <= TEMPLATE_BODY_LIMIT:
        return []
    return [
        f"  i {what} is {size:,} bytes, over the {TEMPLATE_BODY_LIMIT:,} sent inline: rollout stages it in "
        "s3://loginwatch-org-templates-<account>-<region> and passes its URL"
    ]


def _stack_plan_text(plan: StackPlan, title: str) -> str:
    out = [f"{title[:1].upper()}{title[1:]} (plain stacks):"]
    if plan.not_covered:
        out.append(f"  ! {plan.not_covered}")
        return "\n".join(out)
    out.extend(f"  ! {warning}" for warning in plan.warnings)
    out.extend(f"  ! {item.problem}" for item in plan.blocked)
    out.extend(f"  ... waiting: {item}" for item in plan.waiting)
    if not plan.steps:
        out.append(f"  No changes. {len(plan.unchanged)} stack(s) match the config.")
    for step in plan.steps:
        label = stack_label(step.region, step.name)
        match step:
            case CreateStack():
                out.append(f"  + create stack {label} from the {step.template} template ({step.reason})")
            case UpdateStack():
                out.append(f"  ~ update stack {label}: {'; '.join(step.reasons)}")
            case DeleteStack():
                out.append(f"  - delete stack {label} ({step.reason})")
            case ReplaceFailedStack():
                why = f": {step.status_reason}" if step.status_reason else ""
                out.append(f"  ~ replace stack {label}, which is {step.status}{why} (delete, then create)")
    if plan.kept:
        out.append(
            f"  ? stacks the config no longer lists are kept: {', '.join(plan.kept)}; rerun with --prune to delete them"
        )
    written = sorted({step.template for step in plan.steps if isinstance(step, CreateStack | UpdateStack)})
    for name in written:
        out.extend(_staging_note(f"the {name} template", plan.template_bodies.get(name, "")))
    if plan.steps:
        out.append(f"Plan: {plan.operation_count} stack request(s); {len(plan.unchanged)} stack(s) unchanged.")
    return "\n".join(out)


def render_stack_results(results: Sequence[Any]) -> str:
    """Plain-stack requests and how each ended (``aws.stacks.StackResult``)."""
    return "\n".join(
        f"stack {stack_label(r.region, r.name)} [{r.action}]: {r.status}" + (f" ({r.reason})" if r.reason else "")
        for r in results
    )


def _plan_text(plan: Plan) -> str:
    out: list[str] = [f"Stack set {plan.stack_set}:"]
    for warning in plan.warnings:
        out.append(f"  ! {warning}")
    if not plan.steps:
        out.append(f"  No changes. {plan.unchanged_accounts} account(s) match the config.")
    for step in plan.steps:
        if isinstance(step, CreateStackSet):
            out.append(f"  + create stack set {step.name} ({step.reason})")
        elif isinstance(step, UpdateStackSet):
            out.append(f"  ~ update stack set {step.name}: {'; '.join(step.reasons)}")
            for key, (old, new) in sorted(step.parameter_changes.items()):
                out.append(f"        {key}: {old!r} -> {new!r}")
            if step.accounts:
                out.append(f"      applied to {len(step.accounts)} account(s) whose overrides already match")
        elif isinstance(step, CreateInstances):
            out.append(
                f"  + create {len(step.accounts)} instance(s) in {', '.join(step.regions)} with "
                f"{_overrides(step.overrides)}"
            )
            out.extend(_change_line("+", change) for change in step.changes)
        elif isinstance(step, UpdateInstances):
            out.append(f"  ~ update {len(step.accounts)} instance(s) to {_overrides(step.overrides)}")
            out.extend(_change_line("~", change) for change in step.changes)
        elif isinstance(step, DeleteInstances):
            retain = " (keeping the stacks)" if step.retain_stacks else ""
            out.append(f"  - delete {len(step.accounts)} instance(s) in {', '.join(step.regions)}{retain}")
            out.extend(_change_line("-", change) for change in step.changes)
        elif isinstance(step, DeleteStackSet):
            out.append(f"  - delete stack set {step.name} ({step.reason})")
    if plan.kept_orphans:
        out.append(
            f"  ? instances the config no longer lists are kept: {', '.join(plan.kept_orphans)}; "
            "rerun with --prune to delete them"
        )
    if any(isinstance(step, CreateStackSet | UpdateStackSet) for step in plan.steps):
        out.extend(_staging_note("the template", plan.template_body))
    if plan.steps:
        skipped = f"; {len(plan.skipped_accounts)} skipped (not in the organisation)" if plan.skipped_accounts else ""
        out.append(
            f"Plan: {plan.operation_count} StackSet operation(s); {plan.unchanged_accounts} account(s) "
            f"unchanged{skipped}."
        )
    return "\n".join(out)


STATUS_HEADERS = (
    "ACCOUNT",
    "NAME",
    "REGION",
    "STATUS",
    "IN SYNC",
    "RECIPIENTS [ALERT ON] (deployed -> config)",
    "DRIFT",
    "LAST OPERATION",
    "REASON",
)
# Dropped first when the terminal is narrow: the operation id is for debugging, drift is often unknown. REGION
# stays: without it an account's watch and forwarder rows look like duplicates.
STATUS_OPTIONAL = ("LAST OPERATION", "DRIFT")
# Then moved under the row, whole: the reason first, then the recipients, which a column would wrap line by line.
STATUS_DETAILS = ("REASON", "RECIPIENTS [ALERT ON] (deployed -> config)")
STATUS_LABELS = {"RECIPIENTS [ALERT ON] (deployed -> config)": "recipients"}
STATUS_WRAPPED = ("NAME", "STATUS")


def render_status(rows: Sequence[AccountStatus], *, width: int | None = None, drift: bool = False) -> str:
    """The status table; with a ``width`` it fits (columns dropped, moved under their row, then wrapped; --wide
    passes None). With ``drift`` (status --drift) the DRIFT column is what was asked for: it is never dropped."""

    def recipients(row: AccountStatus) -> str:
        if row.recipients_config is None and row.recipients_deployed is None:
            return "-"  # no per-account recipients there: a forwarder row, or a stack that is not a watch
        if row.recipients_config is None:
            return f"{row.recipients_deployed or '-'} (not in config)"
        if row.recipients_deployed == row.recipients_config and row.alert_on_deployed == row.alert_on_config:
            return f"{row.recipients_config} [{row.alert_on_config}]"
        return (
            f"{row.recipients_deployed or '-'} [{row.alert_on_deployed or '-'}] -> "
            f"{row.recipients_config} [{row.alert_on_config}]"
        )

    body = [
        (
            row.account_id,
            row.name,
            row.region,
            row.status + (f"/{row.detailed_status}" if row.detailed_status else ""),
            "yes" if row.in_sync else "no",
            recipients(row),
            row.drift or "-",
            row.last_operation or "-",
            row.reason or "",
        )
        for row in rows
    ]
    optional = tuple(name for name in STATUS_OPTIONAL if not (drift and name == "DRIFT"))
    return table(
        STATUS_HEADERS,
        body,
        width=width,
        optional=optional,
        details=STATUS_DETAILS,
        wrap=STATUS_WRAPPED,
        labels=STATUS_LABELS,
    )


def render_result(result: ApplyResult) -> str:
    lines = []
    for operation in result.operations:
        reason = f" ({operation.reason})" if operation.reason else ""
        lines.append(f"operation {operation.operation_id} [{operation.action}]: {operation.status}{reason}")
    lines.extend(f"note: {note}" for note in result.notes)
    failed = result.failed_accounts
    if failed:
        lines.append("Failed accounts:")
        lines.append(
            table(
                ("ACCOUNT", "REGION", "STATUS", "REASON"),
                [(a.account_id, a.region, a.status, a.reason) for a in failed],
            )
        )
    return "\n".join(lines)
