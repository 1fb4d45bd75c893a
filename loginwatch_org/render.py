"""Text a reviewer reads: plans, status tables and rollout results. Pure string building."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

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
from loginwatch_org.templates import ALERT_POLICY_PARAMETER, RECIPIENTS_PARAMETER
from loginwatch_org.workflow import AccountStatus


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max([len(h), *(len(str(row[i])) for row in rows)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines.extend("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows)
    return "\n".join(lines)


def _overrides(values: Mapping[str, str] | None) -> str:
    if not values:
        return "(unknown)"
    return f"recipients={values.get(RECIPIENTS_PARAMETER, '?')} alert_on={values.get(ALERT_POLICY_PARAMETER, '?')}"


def _change_line(symbol: str, change: AccountChange) -> str:
    name = f" ({change.name})" if change.name else ""
    line = f"    {symbol} {change.account_id}{name}: {change.reason}"
    if change.before is not None and change.after is not None and change.before != change.after:
        line += f"\n        {_overrides(change.before)}\n     -> {_overrides(change.after)}"
    return line


def render_plan(plan: Plan) -> str:
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
    if plan.steps:
        out.append(
            f"Plan: {plan.operation_count} StackSet operation(s); {plan.unchanged_accounts} account(s) unchanged."
        )
    return "\n".join(out)


def render_status(rows: Sequence[AccountStatus]) -> str:
    def recipients(row: AccountStatus) -> str:
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
    headers = (
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
    return table(headers, body)


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
