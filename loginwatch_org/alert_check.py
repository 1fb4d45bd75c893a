"""Test alerts: what became of each one, and how to say so. Pure: ``loginwatch_org.aws.test_alert`` gathers the
evidence, this module judges and renders it.

A test alert is *delivered* only when the notifier logged the SES message id for that test; *failed* when the
publish was refused, the message reached the dead-letter queue, or the notifier logged errors and no email by
the end of the wait; *unconfirmed* when no evidence either way arrived in time.
Without ``--wait`` nobody looks: a test SNS accepted is *sent*, which is all the command then claims.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Outcome = Literal["delivered", "sent", "failed", "unconfirmed"]


@dataclass(frozen=True)
class Evidence:
    """What the member account shows about one test alert."""

    # SES message ids the notifier logged for this test.
    ses_message_ids: tuple[str, ...] = ()
    # Errors the notifier logged after the test was sent (they may belong to another invocation).
    errors: tuple[str, ...] = ()
    # Dead-letter messages that carry this test's id.
    dead_letters: tuple[str, ...] = ()
    # Why the account's function, log group or queue could not be read; None when they were.
    unreadable: str | None = None


@dataclass(frozen=True)
class TestAlert:
    """One test alert: where it went, and what is known of its fate."""

    __test__ = False  # not a pytest test class, whatever its name says

    account: str
    region: str
    topic_arn: str
    test_id: str
    sns_message_id: str | None = None
    # Why SNS refused the publish; None when it accepted it.
    publish_error: str | None = None
    # None when nobody looked (no --wait).
    evidence: Evidence | None = None
    waited_seconds: float = 0.0

    @property
    def outcome(self) -> Outcome:
        if self.publish_error is not None:
            return "failed"
        if self.evidence is None:
            return "sent"
        if self.evidence.ses_message_ids:
            return "delivered"
        # The wait ends early only on delivery or a dead letter: errors at its end mean the attempts failed.
        if self.evidence.dead_letters or self.evidence.errors:
            return "failed"
        return "unconfirmed"

    @property
    def reason(self) -> str:
        if self.publish_error is not None:
            return f"SNS refused the test message: {self.publish_error}"
        evidence = self.evidence
        if evidence is None:
            return (
                f"published (SNS message {self.sns_message_id}); delivery not checked: pass --wait to read the "
                "notifier's log and dead-letter queue"
            )
        if evidence.ses_message_ids:
            ids = evidence.ses_message_ids
            # One SES message per recipient.
            return f"SES accepted the email: message{'s' if len(ids) > 1 else ''} " + ", ".join(ids)
        parts: list[str] = []
        if evidence.dead_letters:
            parts.append(f"the test reached the dead-letter queue ({len(evidence.dead_letters)} message(s))")
        else:
            waited = f" after {self.waited_seconds:.0f} s" if self.waited_seconds >= 1 else ""
            parts.append(f"the notifier logged no email for this test{waited}")
        if evidence.errors:
            parts.append("the notifier logged: " + "; ".join(evidence.errors))
        if evidence.unreadable:
            parts.append(evidence.unreadable)
        return "; ".join(parts)


def all_succeeded(alerts: Sequence[TestAlert]) -> bool:
    """Every test alert delivered (or, when nobody waited, at least accepted by SNS)."""
    return bool(alerts) and all(alert.outcome in ("delivered", "sent") for alert in alerts)


def _json_line(text: str) -> dict[str, Any] | None:
    if not text.startswith("{"):
        return None
    try:
        parsed = json.loads(text)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def errors_in(messages: Iterable[str]) -> tuple[str, ...]:
    """The errors a Python Lambda function logged, one line each, in order and without repeats.

    Lambda's Python runtime logs an unhandled exception as ``[ERROR] Type: message`` followed by the traceback,
    and a timeout as ``Task timed out after N seconds``; a traceback printed by other means ends with the
    ``Type: message`` line after its indented frames.
    """
    found: list[str] = []
    in_traceback = False  # a traceback may span log events: some writers log it line by line
    for message in messages:
        for line in message.splitlines():
            text = line.strip()
            logged = _json_line(text)
            if logged is not None and logged.get("level") == "ERROR" and logged.get("error"):
                # The notifier's own account of an alert it could not send (e.g. parked: SES refused it).
                found.append(str(logged["error"]))
            elif "[ERROR]" in line:
                # The runtime's own traceback follows in the same event: the error is already named.
                found.append(line.split("[ERROR]", 1)[1].strip())
                in_traceback = False
                break
            elif "Task timed out after" in line:
                found.append(text)
            elif line.startswith("Traceback (most recent call last):"):
                in_traceback = True
            elif in_traceback and line and not line[0].isspace():
                found.append(text)
                in_traceback = False
    return tuple(dict.fromkeys(error for error in found if error))


def delivered_ids(messages: Iterable[str], test_id: str) -> tuple[str, ...]:
    """The SES message ids the notifier logged for ``test_id`` (its JSON line "sign-in alert sent")."""
    ids: list[str] = []
    for message in messages:
        for line in message.splitlines():
            if test_id not in line:
                continue
            try:
                logged = json.loads(line[line.index("{") :])
            except ValueError:
                continue
            if isinstance(logged, dict) and logged.get("test_id") == test_id:
                # One SES message per recipient: every id the line names.
                named = logged.get("ses_message_ids") or [logged.get("ses_message_id")]
                ids += [str(i) for i in named if i] if isinstance(named, list) else []
    return tuple(dict.fromkeys(ids))


def render_text(alerts: Sequence[TestAlert], names: dict[str, str] | None = None) -> str:
    names = names or {}
    lines = []
    for alert in alerts:
        label = f"{alert.account} ({names[alert.account]})" if alert.account in names else alert.account
        lines.append(f"{alert.outcome:<12} {label} {alert.region}: {alert.reason}")
    counts = {outcome: sum(alert.outcome == outcome for alert in alerts) for outcome in ("delivered", "sent")}
    summary = f"{counts['delivered']} of {len(alerts)} test alert(s) delivered"
    if counts["sent"]:
        summary += f", {counts['sent']} sent and not checked (pass --wait)"
    lines.append(summary + ".")
    return "\n".join(lines)


@dataclass(frozen=True)
class _Row:
    account: str
    region: str
    outcome: str
    reason: str
    test_id: str
    topic_arn: str
    sns_message_id: str | None
    ses_message_ids: list[str] = field(default_factory=list)
    dead_letters: int = 0
    errors: list[str] = field(default_factory=list)


def render_json(alerts: Sequence[TestAlert]) -> str:
    rows = [
        asdict(
            _Row(
                account=alert.account,
                region=alert.region,
                outcome=alert.outcome,
                reason=alert.reason,
                test_id=alert.test_id,
                topic_arn=alert.topic_arn,
                sns_message_id=alert.sns_message_id,
                ses_message_ids=list(alert.evidence.ses_message_ids) if alert.evidence else [],
                dead_letters=len(alert.evidence.dead_letters) if alert.evidence else 0,
                errors=list(alert.evidence.errors) if alert.evidence else [],
            )
        )
        for alert in alerts
    ]
    return json.dumps({"test_alerts": rows, "all_succeeded": all_succeeded(alerts)}, indent=2)
