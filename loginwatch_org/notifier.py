"""Email an alert for an AWS sign-in event (console or IAM Identity Center), sent with Amazon SES.

Lambda handler ``index.handler``: the source is inlined into the CloudFormation template, so this file must
stay self-contained and use nothing but the standard library and boto3 (imported only when sending).
"""

from __future__ import annotations

import html
import json
import math
import os
import random
import re
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

MAX_VALUE = 1000
MAX_SUBJECT = 200
MAX_RAW = 10000
MISSING = "not recorded"

# C0/C1 controls, DEL, line/paragraph separators, zero-width and bidi controls: they could fold mail headers or
# make a hostile value display as something else (e.g. a reversed ARN, or a user name that looks like another).
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028\u2029\u202a-\u202e\u2060\u2066-\u2069\ufeff]")
# Raw payloads are shown in a <pre> block, where keeping newlines and tabs makes them readable.
_UNSAFE_RAW = re.compile(
    r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028\u2029\u202a-\u202e\u2060\u2066-\u2069\ufeff]"
)
_TIME = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:\.(\d+))?\s*(Z|UTC|[+-]\d\d:?\d\d)?", re.IGNORECASE
)
_ASSUMED = re.compile(r"arn:[^:]*:(?:sts|iam)::[^:]*:assumed-role/([^/]+)/(.+)")
_SSO_ROLE = re.compile(r"AWSReservedSSO_(.+)_[0-9A-Za-z]+")

# eventName -> (wording, preposition) for the subject line.
_EVENTS = {
    "ConsoleLogin": ("Console sign-in", "to"),
    "SwitchRole": ("Console role switch", "into"),
    "ExitRole": ("Console role exit", "in"),
    "RenewRole": ("Console role renewal", "in"),
    "CheckMfa": ("Console MFA check", "in"),
    "PasswordUpdated": ("Console password change", "in"),
    "ExternalIdPDirectoryLogin": ("External IdP directory sign-in", "to"),
    "UserAuthentication": ("Identity Center sign-in", "for"),
    "CredentialChallenge": ("Identity Center credential challenge", "for"),
    "CredentialVerification": ("Identity Center credential check", "for"),
}
# IAM Identity Center's own sign-in steps: CloudTrail records them as AWS service events, with the outcome
# in serviceEventDetails and, in older records, a userIdentity of type "Unknown" that carries only a userName.
# https://docs.aws.amazon.com/singlesignon/latest/userguide/understanding-sign-in-events.html
_IDENTITY_CENTER_EVENTS = frozenset({"UserAuthentication", "CredentialChallenge", "CredentialVerification"})
_META = (("MessageId", "SNS message id"), ("TopicArn", "SNS topic"), ("Timestamp", "SNS timestamp"))


@dataclass(frozen=True)
class Signin:
    """What coalescing needs of one sign-in: display values, kept out of every log line."""

    account: str
    who: str
    wording: str
    time: str
    source_ip: str
    user_agent: str
    region: str
    event_id: str
    # A failed sign-in that is not the root user's: one of many that a storm may bring.
    coalescible: bool


@dataclass(frozen=True)
class Alert:
    subject: str
    text: str
    html: str
    signin: Signin | None = None


def _clean(value: str, limit: int = MAX_VALUE, pattern: re.Pattern[str] = _UNSAFE) -> str:
    value = pattern.sub("\ufffd", value)
    return value if len(value) <= limit else value[: limit - 1] + "\u2026"


def _str(value: Any) -> str | None:
    """Any JSON value as a safe, capped display string; None for absent or empty values."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int | float):
        text = str(value)
    else:
        try:
            text = json.dumps(value, sort_keys=True, default=str)
        except (TypeError, ValueError, RecursionError):
            text = f"<{type(value).__name__}>"
    return _clean(text).strip() or None


def _dig(obj: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), "a number" if isinstance(value, int | float) else type(value).__name__
    )


def _utc(raw: str) -> str | None:
    """CloudTrail times are UTC; exports also write them as '2022-03-16 19:17:41[.000000000]'."""
    m = _TIME.fullmatch(raw.strip())
    if not m:
        return None
    y, mo, d, h, mi, s, frac, tz = m.groups()
    try:
        micro = int((frac or "0")[:6].ljust(6, "0"))
        when = datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), micro, tzinfo=UTC)
        if tz and tz[0] in "+-":
            digits = tz[1:].replace(":", "")
            offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
            when = when - offset if tz[0] == "+" else when + offset
    except (ValueError, OverflowError):
        return None
    return when.isoformat(timespec="microseconds" if when.microsecond else "seconds").replace("+00:00", "Z")


def _url(value: Any) -> str | None:
    # Identity Center LoginTo URLs carry auth codes and CSRF tokens: nobody needs them in a mailbox.
    text = _str(value)
    return re.split(r"[?#]", text, maxsplit=1)[0] if text else None


@dataclass
class _Who:
    short: str
    long: str
    kind: str  # "direct" (MFA recorded), "federated" (MFA not recorded) or "unknown"
    rows: list[tuple[str, str]]


def _identity(
    ident: Any, extra: dict[str, Any], event_name: str | None, notes: list[str], identity_center: bool = False
) -> _Who:
    if ident is None:
        notes.append("userIdentity missing from the event")
        return _Who("unknown principal", "unknown principal (userIdentity missing from the event)", "unknown", [])
    if not isinstance(ident, dict):
        notes.append(f"userIdentity is {_kind(ident)}, not an object")
        return _Who("unknown principal", f"unknown principal (userIdentity: {_str(ident)})", "unknown", [])
    itype = _str(ident.get("type"))
    arn = _str(ident.get("arn"))
    name = _str(ident.get("userName"))
    pid = _str(ident.get("principalId"))
    rows: list[tuple[str, str]] = []
    if itype == "Root":
        acct = _str(ident.get("accountId"))
        return _Who("root", "root user" + (f" of account {acct}" if acct else ""), "direct", rows)
    if itype == "IAMUser":
        name = name or (arn.rsplit("/", 1)[-1] if arn and ":user/" in arn else None) or pid or MISSING
        long = f"IAM user {name}"
        if name == "HIDDEN_DUE_TO_SECURITY_REASONS":
            long += " (AWS hides user names that do not exist in the account)"
        return _Who(f"IAM user {name}", long, "direct", rows)
    if itype == "AssumedRole":
        m = _ASSUMED.fullmatch(arn or "")
        issuer = _dig(ident, "sessionContext", "sessionIssuer")
        role = (m.group(1) if m else None) or _str(_dig(issuer, "userName"))
        session = (m.group(2) if m else None) or (pid.split(":", 1)[1] if pid and ":" in pid else None)
        role_s, session_s = role or MISSING, session or MISSING
        saml = _str(extra.get("SamlProviderArn"))
        switch_from = _str(extra.get("SwitchFrom"))
        sso = _SSO_ROLE.fullmatch(role or "")
        if sso or "/aws-reserved/sso.amazonaws.com/" in (_str(_dig(issuer, "arn")) or ""):
            pset = sso.group(1) if sso else None
            rows += [("Permission set", pset or MISSING), ("Role", role_s)]
            via = f"permission set {pset}" if pset else f"role {role_s}"
            who = _Who(
                f"{session_s} (SSO {pset or role_s})",
                f"IAM Identity Center user {session_s} with {via}",
                "federated",
                rows,
            )
        elif saml:
            provider = saml.rsplit("saml-provider/", 1)[-1]
            rows += [("SAML provider", saml), ("Role", role_s)]
            long = f"SAML-federated user {session_s} in role {role_s} via identity provider {provider}"
            who = _Who(f"{session_s} (SAML {provider})", long, "federated", rows)
        else:
            short = f"role {role_s}" + (f"/{session}" if session else "")
            who = _Who(short, f"role {role_s}, session {session_s}", "federated", rows)
        if switch_from or event_name == "SwitchRole":
            rows.append(("Switched from", switch_from or MISSING))
            who.long += f", switched from {switch_from or 'an unrecorded identity'}"
        return who
    if itype == "FederatedUser":
        fed = (arn.rsplit("federated-user/", 1)[-1] if arn and "federated-user/" in arn else None) or (
            pid.split(":", 1)[-1] if pid else MISSING
        )
        issuer_name = _str(_dig(ident, "sessionContext", "sessionIssuer", "userName"))
        long = f"federated user {fed}" + (f" (federation token of IAM user {issuer_name})" if issuer_name else "")
        return _Who(f"federated user {fed}", long, "federated", rows)
    if itype == "IdentityCenterUser":
        user = _str(extra.get("UserName")) or name or MISSING
        uid = _str(_dig(ident, "onBehalfOf", "userId"))
        rows += [("Identity Center user id", uid or MISSING)]
        store = _str(_dig(ident, "onBehalfOf", "identityStoreArn"))
        if store:
            rows.append(("Identity store", store))
        return _Who(f"{user} (Identity Center)", f"IAM Identity Center user {user}", "federated", rows)
    if itype == "Unknown" and identity_center:
        if recorded := name or _str(extra.get("UserName")):
            return _Who(f"{recorded} (Identity Center)", f"IAM Identity Center user {recorded}", "federated", rows)
        return _Who(
            "an unnamed Identity Center user", "IAM Identity Center user (no user name recorded)", "federated", rows
        )
    if itype is None:
        notes.append("userIdentity.type missing from the event")
    other = name or _str(extra.get("UserName"))
    label = f"identity type {itype or 'missing'}"
    if other:
        return _Who(other, f"user {other} ({label})", "federated" if itype else "unknown", rows)
    ident_s = arn or pid or "unidentified principal"
    return _Who(ident_s, f"{ident_s} ({label}, no user name recorded)", "federated" if itype else "unknown", rows)


def _mfa(
    who: _Who, extra: dict[str, Any], extra_raw: Any, event_name: str | None, identity_center: bool = False
) -> tuple[str, bool]:
    """MFA wording and whether MFA was definitely not used."""
    used = _str(extra.get("MFAUsed"))
    if identity_center:
        # Identity Center records the factors it checked (CredentialType), never an MFA verdict.
        if "EXTERNAL_IDP" in (_str(extra.get("CredentialType")) or "").upper():
            return "not recorded: the external identity provider checks it", False
        return "not recorded as such (Identity Center lists the factors it checked as the credential type)", False
    if who.kind == "federated":
        return "not recorded for federated sign-ins (check the identity provider)", False
    if who.kind == "unknown":
        return "unknown: identity type missing" + (f" (event reports MFAUsed: {used})" if used else ""), False
    if used and used.lower() == "yes":
        device = _str(extra.get("MFAIdentifier"))
        return "Yes" + (f" (device {device})" if device else ""), False
    if used and used.lower() == "no":
        return "No", True
    if used:
        return f"unclear (MFAUsed: {used})", False
    if event_name == "CheckMfa":
        return "checked as a step of the sign-in (see MFA type)", False
    if extra_raw is None:
        return f"{MISSING} (additionalEventData missing from the event)", False
    if not isinstance(extra_raw, dict):
        return f"{MISSING} (additionalEventData is {_kind(extra_raw)}, not an object)", False
    return MISSING, False


def _region(recorded: str | None, delivered: str | None, watch_region: str | None) -> str:
    """Where CloudTrail recorded the sign-in, and whether a forwarder carried it to this watch.

    ``awsRegion`` is where CloudTrail recorded the event and the envelope's ``region`` the region the event
    originated in; an event that a forwarder sends to another region's bus keeps both, so only the Lambda's own
    region (``AWS_REGION``) shows that it was forwarded.
    https://docs.aws.amazon.com/eventbridge/latest/ref/overiew-event-structure.html
    https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-cross-region.html
    """
    if recorded:
        text = recorded + (f" (EventBridge region {delivered})" if delivered and delivered != recorded else "")
    else:
        text = f"{delivered} (EventBridge region)" if delivered else MISSING
    origin = delivered or recorded
    if watch_region and origin and origin != watch_region:
        text += f", forwarded to the watch in {watch_region}"
    return text


def _compose(event: Any, account_name: str | None, watch_region: str | None = None) -> tuple[Alert, dict[str, Any]]:
    notes: list[str] = []
    envelope: dict[str, Any] = {}
    detail: Any = event
    if isinstance(event, dict) and "detail" in event:
        envelope, detail = event, event["detail"]
    incomplete = not isinstance(detail, dict)
    if incomplete:
        notes.append("event detail missing" if detail is None else f"event detail is {_kind(detail)}, not an object")
        detail = {}
    extra_raw = detail.get("additionalEventData")
    extra: dict[str, Any] = extra_raw if isinstance(extra_raw, dict) else {}

    event_name = _str(detail.get("eventName"))
    if not event_name:
        notes.append("eventName missing from the event")
    ident = detail.get("userIdentity")
    identity_center = event_name in _IDENTITY_CENTER_EVENTS or detail.get("eventType") == "AwsServiceEvent"
    who = _identity(ident, extra, event_name, notes, identity_center)
    itype = _str(_dig(ident, "type"))

    # Identity Center records carry the outcome in serviceEventDetails, not responseElements.
    result = None
    for container in (detail.get("responseElements"), detail.get("serviceEventDetails")):
        if isinstance(container, dict):
            result = _str(container.get(event_name or "")) or result
            if result is None and len(container) == 1:
                result = _str(next(iter(container.values())))
        if result:
            break
    error = _str(detail.get("errorMessage"))
    failed = error is not None or (result is not None and result.lower() != "success")
    if result is None:
        notes.append("sign-in result missing from the event (no responseElements)")
    outcome = "failure" if failed else ("success" if result else "unknown")
    result_s = (result or ("Failure" if error else MISSING)) + (f": {error}" if error else "")

    mfa, no_mfa = _mfa(who, extra, extra_raw, event_name, identity_center)
    no_mfa = no_mfa and not failed and event_name == "ConsoleLogin"
    if failed and who.kind == "direct" and _str(extra.get("MFAUsed")):
        # On a failed sign-in MFAUsed says whether the user has MFA, not that anyone got past it.
        mfa = f"not reached: the sign-in failed (event reports MFAUsed: {_str(extra.get('MFAUsed'))})"
    is_root = itype == "Root"

    account = _str(envelope.get("account")) or _str(detail.get("recipientAccountId"))
    account = account or _str(_dig(ident, "accountId"))
    if not account:
        notes.append("account id missing from the event")
    name = _str(account_name)
    account_s = (account or "unknown account") + (f" ({name})" if name else "")

    raw_time = _str(detail.get("eventTime"))
    if raw_time:
        utc = _utc(raw_time)
        time_s = raw_time if utc == raw_time else f"{utc} (recorded as {raw_time})" if utc else None
        time_s = time_s or f"{raw_time} (not a recognised timestamp)"
    else:
        notes.append("eventTime missing from the event")
        eb_time = _str(envelope.get("time"))
        time_s = f"{eb_time} (EventBridge time)" if eb_time else MISSING

    values: dict[str, str | None] = {}
    for key, label in (
        ("sourceIPAddress", "source IP address"),
        ("awsRegion", "region"),
        ("userAgent", "user agent"),
        ("eventID", "event id"),
    ):
        values[key] = _str(detail.get(key))
        if values[key] is None:
            notes.append(f"{key} ({label}) missing from the event")

    flags = "".join(f"[{flag}] " for flag, on in (("ROOT", is_root), ("FAILED", failed), ("NO MFA", no_mfa)) if on)
    if incomplete or not isinstance(ident, dict):
        flags += "[INCOMPLETE] "
    wording, prep = _EVENTS.get(
        event_name or "", (f"Sign-in event {event_name}" if event_name else "Sign-in event", "in")
    )
    subject = f"{flags}{wording} {prep} {account_s} by {who.short}"

    principal_account = _str(_dig(ident, "accountId"))
    rows: list[tuple[str, str]] = [("Who", who.long)]
    if arn := _str(_dig(ident, "arn")):
        rows.append(("Principal ARN", arn))
    rows += [("Identity type", itype or MISSING), *who.rows, ("Account", account_s)]
    if principal_account and principal_account != account:
        rows.append(("Principal account", principal_account))
    rows += [("Event", event_name or MISSING), ("Result", result_s), ("MFA used", mfa)]
    for key, label in (("MfaType", "MFA type"), ("CredentialType", "Credential type")):
        if value := _str(extra.get(key)):
            rows.append((label, value))
    rows += [
        ("Source IP", values["sourceIPAddress"] or MISSING),
        ("Time (UTC)", time_s),
        ("Region", _region(values["awsRegion"], _str(envelope.get("region")), _str(watch_region))),
        ("User agent", values["userAgent"] or MISSING),
    ]
    for key, label in (("LoginTo", "Signing in to"), ("RedirectTo", "Redirect to")):
        if url := _url(extra.get(key)):
            rows.append((label, url))
    if (_str(extra.get("MobileVersion")) or "").lower() == "yes":
        rows.append(("Mobile console", "Yes"))
    if (_str(extra.get("DeviceEnrollmentRequired")) or "").lower() == "true":
        rows.append(("MFA device", "registration required at this sign-in"))
    rows += [
        ("CloudTrail event id", values["eventID"] or MISSING),
        ("EventBridge event id", _str(envelope.get("id")) or "none (not delivered by EventBridge)"),
    ]
    severity = "high" if is_root or failed else "medium" if no_mfa or notes else "low"
    facts = {
        "event_id": values["eventID"],
        "eventbridge_id": _str(envelope.get("id")),
        "event_name": event_name,
        "identity_type": itype,
        "account": account,
        "outcome": outcome,
        "region": values["awsRegion"] or _str(envelope.get("region")),
        "root": is_root,
        "problems": len(notes),
    }
    signin = Signin(
        account=account_s,
        who=who.short,
        wording=wording,
        time=(_utc(raw_time) if raw_time else None) or time_s,
        source_ip=values["sourceIPAddress"] or MISSING,
        user_agent=values["userAgent"] or MISSING,
        region=values["awsRegion"] or _str(envelope.get("region")) or MISSING,
        event_id=values["eventID"] or MISSING,
        coalescible=failed and not is_root and bool(event_name),
    )
    return replace(_render(subject, rows, notes, severity), signin=signin), facts


def _render(subject: str, rows: list[tuple[str, str]], notes: list[str], severity: str, raw: str = "") -> Alert:
    subject = _clean(subject, limit=MAX_SUBJECT)
    width = max(len(label) for label, _ in rows) + 2
    lines = [subject, "=" * min(len(subject), 78), ""]
    if notes:
        lines += ["Problems with this event:", *(f"  - {n}" for n in notes), ""]
    lines += [f"{label + ':':<{width}}{value}" for label, value in rows]
    footer = "If you do not recognise this activity, treat it as a possible compromise of the account."
    if raw:
        lines += ["", f"Raw payload (up to {MAX_RAW} characters):", raw]
    lines += ["", footer, ""]

    def e(value: str) -> str:
        return html.escape(value, quote=True)

    color = {"high": "#b00020", "medium": "#b35900"}.get(severity, "#1f4e79")
    cell = "padding:4px 12px 4px 0;vertical-align:top;text-align:left"
    parts = [
        "<!DOCTYPE html><html>",
        '<body style="font-family:Arial,Helvetica,sans-serif;font-size:14px;color:#222">',
        f'<div style="padding:10px;background:{color};color:#fff;font-weight:bold">{e(subject)}</div>',
    ]
    if notes:
        parts.append("<p><b>Problems with this event:</b></p><ul>")
        parts += [f"<li>{e(n)}</li>" for n in notes]
        parts.append("</ul>")
    parts.append('<table style="border-collapse:collapse;margin-top:10px">')
    parts += [
        f'<tr><th style="{cell};white-space:nowrap">{e(label)}</th>'
        f'<td style="{cell};font-family:monospace;word-break:break-all">{e(value)}</td></tr>'
        for label, value in rows
    ]
    parts.append("</table>")
    if raw:
        parts.append(f"<p><b>Raw payload (up to {MAX_RAW} characters):</b></p>")
        parts.append(f'<pre style="white-space:pre-wrap;word-break:break-all">{e(raw)}</pre>')
    parts.append(f'<p style="color:#666;font-size:12px">{e(footer)}</p></body></html>')
    return Alert(subject=subject, text="\n".join(lines), html="\n".join(parts))


def compose_alert(event: dict[str, Any], account_name: str | None = None, watch_region: str | None = None) -> Alert:
    """Build the email for one EventBridge sign-in event (or a bare CloudTrail record).

    ``watch_region`` is the region of the watch that received it, to say when a forwarder carried it there.
    """
    return _compose(event, account_name, watch_region)[0]


def _unparseable(raw: str, reason: str, meta: dict[str, Any], account_name: str | None) -> tuple[Alert, dict[str, Any]]:
    name = _str(account_name)
    subject = "[UNPARSEABLE] Sign-in alert payload could not be parsed" + (f" ({name})" if name else "")
    rows = [("Problem", f"the payload could not be parsed: {_str(reason) or 'unknown error'}")]
    rows += [(label, _str(meta.get(key)) or MISSING) for key, label in _META]
    notes = ["the payload could not be parsed, so the details below are the raw message as received"]
    raw_s = _clean(raw, limit=MAX_RAW, pattern=_UNSAFE_RAW)
    return _render(subject, rows, notes, "high", raw=raw_s or "(empty)"), {
        "outcome": "unknown",
        "parse_error": True,
        "sns_message_id": _str(meta.get("MessageId")),
    }


# A test alert (``loginwatch-org test-alert``) is an SNS message {TEST_ALERT_KEY: {...}} that the StackSets
# administrator account publishes to the topic; no EventBridge event has this key. Its mail is always marked
# [TEST] and says who asked for it, so a test is never mistaken for a sign-in, nor a sign-in for a test.
TEST_ALERT_KEY = "loginwatch-test-alert"


def _test_alert(
    request: dict[str, Any], meta: dict[str, Any], account_name: str | None, watch_region: str | None
) -> tuple[Alert, dict[str, Any]]:
    topic = _str(meta.get("TopicArn"))
    # The topic's ARN is set by SNS, not by the publisher: it names the account this watch runs in.
    account = (topic.split(":")[4] if topic and topic.count(":") >= 5 else None) or _str(request.get("account"))
    name = _str(account_name)
    account_s = (account or "unknown account") + (f" ({name})" if name else "")
    test_id = _str(request.get("test_id"))
    rows = [
        ("What", "a test of this account's sign-in alerts sent by the StackSets administrator; nobody signed in"),
        ("Sent by", _str(request.get("requested_by")) or MISSING),
        ("Sent at (UTC)", _str(request.get("requested_at")) or MISSING),
        ("Account", account_s),
        ("Region", _str(watch_region) or MISSING),
        ("Test id", test_id or MISSING),
        *((label, _str(meta.get(key)) or MISSING) for key, label in _META),
    ]
    subject = f"[TEST] Test alert for {account_s} from the loginwatch administrator"
    return _render(subject, rows, [], "low"), {
        "outcome": "test",
        "account": account,
        "test_id": test_id,
        "sns_message_id": _str(meta.get("MessageId")),
    }


def _alert_for(record: Any, account_name: str | None, watch_region: str | None = None) -> tuple[Alert, dict[str, Any]]:
    sns = _dig(record, "Sns")
    meta: dict[str, Any] = sns if isinstance(sns, dict) else {}
    message = meta.get("Message")
    if not isinstance(message, str):
        raw = _str(record) or ""
        return _unparseable(raw, "the SNS record has no Message text", meta, account_name)
    try:
        parsed = json.loads(message)
    except (ValueError, RecursionError) as exc:
        return _unparseable(message, f"not valid JSON ({exc})", meta, account_name)
    if isinstance(parsed, dict) and isinstance(parsed.get(TEST_ALERT_KEY), dict):
        return _test_alert(parsed[TEST_ALERT_KEY], meta, account_name, watch_region)
    try:
        event = parsed if isinstance(parsed, dict) else {"detail": parsed}
        alert, facts = _compose(event, account_name, watch_region)
    except Exception as exc:
        # A composer bug must not swallow the alert: fall back to the raw message.
        return _unparseable(message, f"composing the alert failed ({type(exc).__name__}: {exc})", meta, account_name)
    return alert, {**facts, "sns_message_id": _str(meta.get("MessageId"))}


def _ses_client(source_arn: str) -> Any:
    import boto3

    # Sending authorization only works in the region of the identity the SourceArn names.
    parts = source_arn.split(":")
    region = parts[3] if len(parts) > 5 and parts[2] == "ses" and parts[3] else None
    options: dict[str, Any] = {"region_name": region} if region else {}
    return boto3.client("ses", **options, **_mail_role_credentials())


# The mail account's sending role (MAIL_ROLE_ARN): when set, this function sends as that account, whose SES alone
# needs production access. Its credentials are kept for their lifetime (one AssumeRole per container and hour, not
# per alert) and renewed a few minutes before they expire, so a send never starts with credentials about to lapse.
MAIL_ROLE_RENEW_BEFORE = timedelta(minutes=5)
# Role chaining (this function's role session assuming another role) allows at most one hour; more fails.
# https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html (DurationSeconds)
MAIL_ROLE_SESSION_SECONDS = 3600
_MAIL_ROLE_CACHE: dict[str, tuple[datetime, dict[str, str]]] = {}


def _now() -> datetime:
    return datetime.now(UTC)


def _mail_role_credentials() -> dict[str, str]:
    """boto3 client arguments for the mail account's sending role; empty without MAIL_ROLE_ARN (send as this account).

    An AssumeRole failure raises: the alert must be retried or dead-lettered, never sent from the wrong account.
    """
    role_arn = os.environ.get("MAIL_ROLE_ARN", "").strip()
    if not role_arn:
        return {}
    cached = _MAIL_ROLE_CACHE.get(role_arn)
    if cached is None or cached[0] - _now() <= MAIL_ROLE_RENEW_BEFORE:
        import boto3

        # The session name shows up in the mail account's CloudTrail: name the function that sent.
        session = re.sub(r"[^\w+=,.@-]", "-", os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "") or "loginwatch")[:64]
        granted = boto3.client("sts").assume_role(
            RoleArn=role_arn, RoleSessionName=session, DurationSeconds=MAIL_ROLE_SESSION_SECONDS
        )["Credentials"]
        expiration = granted["Expiration"]
        if isinstance(expiration, str):
            expiration = datetime.fromisoformat(expiration.replace("Z", "+00:00"))
        cached = (
            expiration if expiration.tzinfo else expiration.replace(tzinfo=UTC),
            {
                "aws_access_key_id": granted["AccessKeyId"],
                "aws_secret_access_key": granted["SecretAccessKey"],
                "aws_session_token": granted["SessionToken"],
            },
        )
        _MAIL_ROLE_CACHE[role_arn] = cached
    return dict(cached[1])


_ALIAS_CACHE: dict[str, str | None] = {}


def _account_alias() -> str | None:
    """The account's IAM alias names it in the email; looked up once per container, never fatal."""
    if "alias" not in _ALIAS_CACHE:
        try:
            import boto3

            aliases = boto3.client("iam").list_account_aliases().get("AccountAliases", [])
            _ALIAS_CACHE["alias"] = _str(aliases[0]) if aliases else None
        except Exception as exc:  # the alert matters more than the name
            print(json.dumps({"level": "WARNING", "message": f"no account alias: {type(exc).__name__}"}))
            _ALIAS_CACHE["alias"] = None
    return _ALIAS_CACHE["alias"]


# --- delivery -------------------------------------------------------------------------------------------
# The topic delivers into a buffer queue, which Lambda reads in batches (an SQS event source mapping with a
# batching window and partial batch responses). A batch's failed sign-ins that share account, identity and
# event become one email; root sign-ins, successes and test alerts are emailed one by one. Each recipient gets
# a send of its own, so one rejected address stops nobody else. SES throttling and quota errors are not the
# alert's fault: its message goes back to the queue with a growing delay. What can never be delivered is parked
# in the dead-letter queue at once, naming the recipients it did not reach, so its alarm fires within minutes.
# https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-errorhandling.html (partial batch responses)

# A coalescing key emailed less than this long ago in this execution environment holds its new sign-ins back
# until then, so a storm becomes one email a minute per key and environment (the mapping runs at most
# MaximumConcurrency environments). State in memory is best effort: a new environment starts afresh and may send
# one email more, never one sign-in fewer.
COALESCE_HOLD_SECONDS = 60
# More failed identities than this in one account and batch become a single email for the account: an attacker
# who tries many user names gets one email per minute, not one per name.
MAX_GROUPS_PER_ACCOUNT = 3
# How many distinct values (IP addresses, user agents, identities) a coalesced email lists before "and N more".
TOP_VALUES = 5
# Retrying a throttled send: 30 s doubling per receive, at most 15 minutes (SQS's largest message delay), each
# delay drawn between half and all of that so that notifiers throttled together do not come back together.
# https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SendMessage.html (DelaySeconds),
# https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/
RETRY_BASE_SECONDS = 30
RETRY_MAX_SECONDS = 900
# SES's "Maximum sending rate exceeded" passes within a second: the notifier waits about that long and tries the
# same recipient again, for at most PACE_BUDGET_SECONDS of an invocation, before the queue takes over.
# https://aws.amazon.com/blogs/messaging-and-targeting/how-to-handle-a-throttling-maximum-sending-rate-exceeded-error/
PACE_SECONDS = 1.0
PACE_BUDGET_SECONDS = 20.0
# Sending stops this long before the invocation's deadline and the rest goes back to the queue: a timed-out
# batch would return whole after the visibility timeout and send again what was already sent.
DEADLINE_MARGIN_SECONDS = 10.0
# An unexpected error (not SES saying "later") is retried this many receives, then the alert is parked.
UNEXPECTED_ERROR_RECEIVES = 5
# A message attribute that narrows delivery to some of the configured recipients (those a retry or a replay
# still owes the alert). Addresses outside RECIPIENTS are ignored, so no sender can widen who gets mail.
RECIPIENTS_ATTRIBUTE = "Recipients"
PARK_REASON_ATTRIBUTE = "ErrorMessage"
# ChangeMessageVisibilityBatch takes at most ten entries.
# https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_ChangeMessageVisibilityBatch.html
VISIBILITY_BATCH = 10

# SES's own words for "not now": sending rate or daily quota exceeded, or the service briefly unavailable.
# https://docs.aws.amazon.com/ses/latest/dg/manage-sending-quotas-errors.html
_LATER_CODES = frozenset(
    {"Throttling", "ThrottlingException", "TooManyRequestsException", "ServiceUnavailable", "InternalFailure"}
)
# An address SES refuses (in the SES sandbox: one not verified); the others may still be sent to.
_ADDRESS_CODES = frozenset({"MessageRejected"})
_CONNECTION_ERRORS = frozenset(
    {"EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError"}
)

_LAST_EMAILED: dict[tuple[str, ...], float] = {}


@dataclass
class QueuedAlert:
    """One message of a batch, with its alert and whom it is still owed to."""

    message_id: str
    receipt: str
    receives: int
    body: str
    alert: Alert
    facts: dict[str, Any]
    recipients: tuple[str, ...]


@dataclass
class Email:
    alert: Alert
    recipients: tuple[str, ...]
    alerts: list[QueuedAlert]
    key: tuple[str, ...] | None = None
    sent: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    # Why the rest must wait: "later" (SES says so) or "unexpected" (an error nobody named); "" when nothing waits.
    later: str = ""
    # The error that made the rest wait, as the log and a direct caller are told it.
    waiting_because: str = ""
    message_ids: list[str] = field(default_factory=list)


def _error_kind(exc: Exception) -> str:
    """'later' (retry when SES allows), 'address' (this recipient only) or 'never' (nobody can be sent to)."""
    code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
    if code in _LATER_CODES or type(exc).__name__ in _CONNECTION_ERRORS:
        return "later"
    if code in _ADDRESS_CODES:
        return "address"
    return "never" if code else "unexpected"


def _top(values: list[str]) -> str:
    counted = Counter(values).most_common()
    shown = ", ".join(f"{value} ({count})" for value, count in counted[:TOP_VALUES])
    rest = len(counted) - TOP_VALUES
    return shown + (f", and {rest} other{'s' if rest > 1 else ''}" if rest > 0 else "")


def coalesced_alert(signins: list[Signin]) -> Alert:
    """One email for many failed sign-ins to one account: how many, when, who, from where and with what."""
    first, last = min(s.time for s in signins), max(s.time for s in signins)
    identities = sorted({s.who for s in signins})
    who = identities[0] if len(identities) == 1 else f"{len(identities)} identities"
    wordings = {s.wording for s in signins}
    wording = next(iter(wordings)).lower() if len(wordings) == 1 else "sign-in"
    subject = f"[FAILED] [x{len(signins)}] {len(signins)} failed {wording} attempts to {signins[0].account} by {who}"
    rows = [
        ("Sign-ins", f"{len(signins)} failed, coalesced into this one email"),
        ("Account", signins[0].account),
        ("Who", _top([s.who for s in signins])),
        ("First (UTC)", first),
        ("Last (UTC)", last),
        ("Source IPs", _top([s.source_ip for s in signins])),
        ("User agents", _top([s.user_agent for s in signins])),
        ("Regions", _top([s.region for s in signins])),
        ("CloudTrail event ids", _top([s.event_id for s in signins])),
    ]
    return replace(_render(subject, rows, [], "high"), signin=None)


def plan_emails(alerts: list[QueuedAlert], now: float | None) -> tuple[list[Email], list[tuple[QueuedAlert, int]]]:
    """The emails a batch becomes, and the alerts held back (for how many seconds) to join a later email because
    their key was just emailed. Without ``now`` (not from the buffer) every alert is an email of its own."""
    emails: list[Email] = []
    groups: dict[tuple[str, ...], list[QueuedAlert]] = {}
    for queued in alerts:
        signin = queued.alert.signin
        if signin is None or not signin.coalescible or now is None:
            emails.append(Email(queued.alert, queued.recipients, [queued]))
            continue
        key: tuple[str, ...] = (",".join(queued.recipients), signin.account, signin.wording, signin.who)
        groups.setdefault(key, []).append(queued)
    if now is None:
        return emails, []
    per_account = Counter(key[:2] for key in groups)
    merged: dict[tuple[str, ...], list[QueuedAlert]] = {}
    for key, members in groups.items():
        merged.setdefault(key[:2] if per_account[key[:2]] > MAX_GROUPS_PER_ACCOUNT else key, []).extend(members)
    held: list[tuple[QueuedAlert, int]] = []
    for key, members in merged.items():
        wait = COALESCE_HOLD_SECONDS - (now - _LAST_EMAILED[key]) if key in _LAST_EMAILED else 0
        if wait > 0:
            held += [(m, math.ceil(wait)) for m in members]
            continue
        signins = [m.alert.signin for m in members if m.alert.signin is not None]
        alert = members[0].alert if len(members) == 1 else coalesced_alert(signins)
        emails.append(Email(alert, members[0].recipients, members, key))
    return emails, held


def _request(settings: Settings, recipient: str, alert: Alert) -> dict[str, Any]:
    request: dict[str, Any] = {
        "Source": settings.sender,
        "Destination": {"ToAddresses": [recipient]},
        "Message": {
            "Subject": {"Data": alert.subject, "Charset": "UTF-8"},
            "Body": {
                "Text": {"Data": alert.text, "Charset": "UTF-8"},
                "Html": {"Data": alert.html, "Charset": "UTF-8"},
            },
        },
    }
    if settings.source_arn:
        request["SourceArn"] = settings.source_arn
    if settings.configuration_set:
        # Its event destination reports bounces, complaints and rejections to the alarm recipients.
        request["ConfigurationSetName"] = settings.configuration_set
    return request


@dataclass
class Pacing:
    """How long this invocation has waited out SES's sending rate so far."""

    waited: float = 0.0

    def wait_out_rate(self, exc: Exception) -> bool:
        """Wait about a second when SES's sending rate (not its daily quota) refused; False when the budget is spent."""
        message = str(getattr(exc, "response", {}).get("Error", {}).get("Message", ""))
        if "sending rate" not in message.lower() or self.waited + PACE_SECONDS > PACE_BUDGET_SECONDS:
            return False
        pause = PACE_SECONDS * (0.5 + random.random())
        time.sleep(pause)
        self.waited += pause
        return True


def _attempt(client: Any, request: dict[str, Any], pacing: Pacing) -> dict[str, Any] | Exception:
    """SES's answer to one send, after waiting out its sending rate while the pacing budget lasts."""
    while True:
        try:
            return dict(client.send_email(**request))
        except Exception as exc:
            if not pacing.wait_out_rate(exc):
                return exc


def _send(client: Any, settings: Settings, email: Email, pacing: Pacing) -> None:
    """Send to each recipient in turn; stop at SES's first "later"."""
    for recipient in email.recipients:
        response = _attempt(client, _request(settings, recipient, email.alert), pacing)
        if isinstance(response, Exception):
            exc = response
            kind = _error_kind(exc)
            if kind in ("later", "unexpected"):
                email.later, email.waiting_because = kind, f"{type(exc).__name__}: {exc}"[:1000]
                return
            # "never" (e.g. access denied, sending paused) will not pass for the others either.
            targets = [recipient] if kind == "address" else [r for r in email.recipients if r not in email.sent]
            email.refused.update({r: f"{type(exc).__name__}: {exc}"[:1000] for r in targets})
            if kind == "never":
                return
            continue
        email.sent.append(recipient)
        email.message_ids.append(str(response.get("MessageId", "")))


def _log_sent(email: Email) -> None:
    if len(email.alerts) == 1:
        log = {"message": "sign-in alert sent", **email.alerts[0].facts}
    else:
        facts = email.alerts[0].facts
        log = {
            "message": "coalesced sign-in alerts sent",
            "signins": len(email.alerts),
            "account": facts.get("account"),
            "outcome": facts.get("outcome"),
            "event_ids": [a.facts.get("event_id") for a in email.alerts],
        }
    ids = email.message_ids
    log.update(level="INFO", ses_message_id=ids[0] if ids else None, ses_message_ids=ids, recipients=len(email.sent))
    print(json.dumps(log, sort_keys=True, default=str), flush=True)


@dataclass(frozen=True)
class Settings:
    sender: str
    recipients: tuple[str, ...]
    source_arn: str
    account_name: str | None
    watch_region: str | None
    buffer_queue_url: str
    dead_letter_queue_url: str
    configuration_set: str = ""

    @classmethod
    def from_environment(cls) -> Settings:
        sender = os.environ.get("SENDER", "").strip()
        recipients = tuple(r.strip() for r in os.environ.get("RECIPIENTS", "").split(",") if r.strip())
        if not sender or not recipients:
            raise RuntimeError("SENDER and RECIPIENTS must be set")
        # Lambda sets AWS_REGION to the function's region.
        # https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html#configuration-envvars-runtime
        return cls(
            sender=sender,
            recipients=recipients,
            source_arn=os.environ.get("SOURCE_ARN", "").strip(),
            account_name=os.environ.get("ACCOUNT_NAME", "").strip() or _account_alias(),
            watch_region=os.environ.get("AWS_REGION", "").strip() or None,
            buffer_queue_url=os.environ.get("BUFFER_QUEUE_URL", "").strip(),
            dead_letter_queue_url=os.environ.get("DEAD_LETTER_QUEUE_URL", "").strip(),
            configuration_set=os.environ.get("CONFIGURATION_SET", "").strip(),
        )

    def owed(self, narrowed: str | None) -> tuple[str, ...]:
        """The configured recipients, or those of them a message attribute narrows delivery to."""
        if narrowed is None:
            return self.recipients
        wanted = {r.strip().lower() for r in narrowed.split(",")}
        # None of them configured any more (the config changed since): the alert is owed to those who are.
        return tuple(r for r in self.recipients if r.lower() in wanted) or self.recipients


def _sqs_client() -> Any:
    import boto3

    return boto3.client("sqs")


def _attribute(record: dict[str, Any], name: str) -> str | None:
    """A message attribute as SQS carries it into a Lambda event."""
    value = _dig(record, "messageAttributes", name, "stringValue")
    return value if isinstance(value, str) else None


def _queued(record: Any, settings: Settings) -> QueuedAlert:
    record = record if isinstance(record, dict) else {"body": _str(record) or ""}
    body = record.get("body")
    body = body if isinstance(body, str) else _str(body) or ""
    try:
        notification = json.loads(body)
    except (ValueError, RecursionError):
        notification = None
    if "Sns" in record:  # SNS invoked the function itself
        as_sns: Any = record
    elif isinstance(notification, dict) and notification.get("Type") == "Notification":
        as_sns = {"Sns": notification}
    else:  # a raw message: deliver what it says
        as_sns = {"Sns": {"Message": body, "MessageId": _str(record.get("messageId"))}}
    alert, facts = _alert_for(as_sns, settings.account_name, settings.watch_region)
    try:
        receives = int(_dig(record, "attributes", "ApproximateReceiveCount") or 1)
    except (TypeError, ValueError):
        receives = 1
    return QueuedAlert(
        message_id=str(record.get("messageId", "")),
        receipt=str(record.get("receiptHandle", "")),
        receives=receives,
        body=body,
        alert=alert,
        facts=facts,
        recipients=settings.owed(_attribute(record, RECIPIENTS_ATTRIBUTE)),
    )


def retry_delay(receives: int, jitter: float | None = None) -> int:
    """Seconds until a throttled message's next try: between half and all of the doubling delay."""
    ceiling = min(RETRY_BASE_SECONDS * 2 ** max(receives - 1, 0), RETRY_MAX_SECONDS)
    share = random.random() if jitter is None else jitter
    return max(1, int(ceiling / 2 + share * ceiling / 2))


def _resend(sqs: Any, queue_url: str, queued: QueuedAlert, recipients: list[str], **extra: Any) -> bool:
    """Put a copy of the message (owed to ``recipients`` only) on a queue; False when that fails."""
    attributes = {RECIPIENTS_ATTRIBUTE: {"DataType": "String", "StringValue": ",".join(recipients)}}
    for name, value in extra.pop("attributes", {}).items():
        attributes[name] = {"DataType": "String", "StringValue": value}
    try:
        sqs.send_message(QueueUrl=queue_url, MessageBody=queued.body, MessageAttributes=attributes, **extra)
    except Exception as exc:
        print(json.dumps({"level": "ERROR", "message": "could not requeue an alert", "error": type(exc).__name__}))
        return False
    return True


def _send_all(settings: Settings, emails: list[Email], deadline: float | None = None) -> None:
    pacing = Pacing()
    try:
        client = _ses_client(settings.source_arn) if emails else None
    except Exception as exc:  # e.g. the mail account's role could not be assumed: retried, then parked
        why = f"{type(exc).__name__}: {exc}"[:1000]
        print(json.dumps({"level": "ERROR", "message": "no SES client", "error": why}))
        client, emails[0].later, emails[0].waiting_because = None, "unexpected", why
    for email in emails:
        waiting = next((e for e in emails if e.later), None)
        if waiting is not None:
            # SES said "later" to an earlier email of this batch: it says so to this one too.
            email.later, email.waiting_because = waiting.later, waiting.waiting_because
            continue
        if deadline is not None and time.monotonic() > deadline:
            email.later, email.waiting_because = "later", "the invocation ran out of time"
            continue
        _send(client, settings, email, pacing)
        if email.sent:
            _log_sent(email)
            if email.key is not None:
                _LAST_EMAILED[email.key] = time.monotonic()


def _settle_batch(emails: list[Email], held: list[tuple[QueuedAlert, int]], settings: Settings) -> dict[str, Any]:
    """The partial batch response: what must come back, each after its delay; everything else is done."""
    sqs = _sqs_client() if held or any(e.later or e.refused for e in emails) else None
    # One draw for the batch: what SES deferred together comes back together and is coalesced again, while
    # other batches (other accounts' notifiers, in mail-account mode) come back at other times.
    jitter = random.random()
    retry = list(held)
    for email in emails:
        for queued in email.alerts:
            retry += _settle(sqs, settings, email, queued, jitter)
    for start in range(0, len(retry), VISIBILITY_BATCH):
        chunk = retry[start : start + VISIBILITY_BATCH]
        entries = [
            {"Id": str(number), "ReceiptHandle": queued.receipt, "VisibilityTimeout": delay}
            for number, (queued, delay) in enumerate(chunk)
        ]
        try:
            sqs = sqs or _sqs_client()
            failed = sqs.change_message_visibility_batch(QueueUrl=settings.buffer_queue_url, Entries=entries)
            problems = failed.get("Failed") or []
        except Exception as exc:
            problems = [{"Code": type(exc).__name__}]
        if problems:  # the queue's own visibility timeout then decides when they come back
            print(json.dumps({"level": "WARNING", "message": "no retry delay set", "error": problems[0].get("Code")}))
    return {"batchItemFailures": [{"itemIdentifier": queued.message_id} for queued, _delay in retry]}


def _settle(
    sqs: Any, settings: Settings, email: Email, queued: QueuedAlert, jitter: float
) -> list[tuple[QueuedAlert, int]]:
    """What becomes of one message after its email: done, parked for the recipients SES refused, or retried
    (the whole message while nobody has it, else a copy owed to those still waiting). Returns the retries."""
    owed = [r for r in queued.recipients if r not in email.sent and r not in email.refused]
    refused = {r: why for r, why in email.refused.items() if r in queued.recipients}
    if email.later == "unexpected" and queued.receives >= UNEXPECTED_ERROR_RECEIVES:
        refused.update({r: f"an unexpected error on {queued.receives} attempts (see the function's log)" for r in owed})
        owed = []
    if refused:
        reason = "; ".join(f"{r}: {why}" for r, why in refused.items())[:1000]
        parked = settings.dead_letter_queue_url and _resend(
            sqs,
            settings.dead_letter_queue_url,
            queued,
            list(refused),
            attributes={PARK_REASON_ATTRIBUTE: reason},
        )
        if not parked:
            return [(queued, retry_delay(queued.receives, jitter))]
        parked_log = {"level": "ERROR", "message": "alert parked in the dead-letter queue", "error": reason}
        print(json.dumps({**queued.facts, **parked_log}, default=str), flush=True)
    if not owed:
        return []
    if not email.sent and not refused:
        return [(queued, retry_delay(queued.receives, jitter))]
    delay = retry_delay(queued.receives, jitter)
    if _resend(sqs, settings.buffer_queue_url, queued, owed, DelaySeconds=delay):
        return []
    return [(queued, delay)]


def _deadline(context: Any) -> float | None:
    """When sending must stop (on the monotonic clock), from the Lambda context's remaining time."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if not callable(remaining):
        return None
    try:
        return time.monotonic() + float(remaining()) / 1000.0 - DEADLINE_MARGIN_SECONDS
    except (TypeError, ValueError):
        return None


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """A batch from the buffer queue gets a partial batch response. Anything else (an SNS delivery, a replay, a
    console test) is emailed record by record, and the call raises unless every email reached everyone."""
    settings = Settings.from_environment()
    records = event.get("Records") if isinstance(event, dict) else None
    if not isinstance(records, list) or not records:
        # Invoked directly (e.g. an EventBridge target or a console test): wrap so nothing is dropped.
        records = [{"body": json.dumps(event, default=str)}]
    buffered = all(_dig(r, "eventSource") == "aws:sqs" for r in records)
    alerts = [_queued(record, settings) for record in records]
    emails, held = plan_emails(alerts, time.monotonic() if buffered else None)
    _send_all(settings, emails, _deadline(context))
    if buffered:
        return _settle_batch(emails, held, settings)
    unsent = [
        f"{e.alert.subject!r} not sent to {r}: {e.refused.get(r) or e.waiting_because or 'not tried'}"
        for e in emails
        for r in e.recipients
        if r not in e.sent
    ]
    if unsent:
        raise RuntimeError("alert not delivered: " + " | ".join(unsent))
    ids = [i for e in emails for i in e.message_ids]
    return {"count": sum(1 for e in emails if e.sent), "message_ids": ids}
