"""SES's sending limits in the sandbox: the rate and the 24-hour quota count recipients, an account still in the
SES sandbox sends only to verified addresses, and the knobs lower an account's production quota."""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

import pytest

from loginwatch_org.sandbox.behaviour import prerequisites, ses

ACCOUNT, REGION = "111122223333", "us-east-1"


@pytest.fixture
def backend(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(prerequisites, "_production_access", {(ACCOUNT, REGION)})
    monkeypatch.setattr(ses, "_sent", ses.defaultdict(ses.deque))
    return SimpleNamespace(
        account_id=ACCOUNT, region_name=REGION, _is_verified_address=lambda a: a.endswith("@example.com")
    )


def _send(backend: Any, recipients: list[str], moment: float) -> None:
    """What the patched SendEmail does around moto's own send: check, then count."""
    ses.check_limits(backend, recipients, moment)
    ses._sent[(ACCOUNT, REGION)].append((moment, len(recipients)))


def test_the_rate_counts_recipients_within_a_second(backend: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(prerequisites.MAX_SEND_RATE_ENV, "3")
    _send(backend, ["a@x.org", "b@x.org"], 100.0)
    _send(backend, ["c@x.org"], 100.2)
    with pytest.raises(ses.Throttling, match=re.escape("Maximum sending rate exceeded.")):
        _send(backend, ["d@x.org"], 100.5)
    _send(backend, ["d@x.org"], 101.3)  # a second later the window has moved on
    # A knob never raises the quota above what new production access gets.
    monkeypatch.setenv(prerequisites.MAX_SEND_RATE_ENV, "500")
    assert prerequisites.send_quota(ACCOUNT, REGION).max_send_rate == 14.0


def test_the_daily_quota_holds_for_24_hours(backend: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(prerequisites.MAX_24H_SEND_ENV, "4")
    for moment in (0.0, 10.0):
        _send(backend, ["a@x.org", "b@x.org"], moment)
    with pytest.raises(ses.Throttling, match=re.escape("Daily message quota exceeded.")):
        _send(backend, ["c@x.org"], 3600.0)
    _send(backend, ["c@x.org"], 86400.5)  # the first send has left the 24 hours


def test_an_account_in_the_ses_sandbox_sends_one_a_second_to_verified_addresses_only(backend: Any) -> None:
    prerequisites._production_access.clear()
    assert prerequisites.send_quota(ACCOUNT, REGION) == prerequisites.SendQuota(200.0, 1.0, production=False)
    with pytest.raises(ses.MessageRejectedError, match=re.escape("failed the check in region US-EAST-1: b@other.org")):
        _send(backend, ["a@example.com", "b@other.org"], 0.0)
    _send(backend, ["a@example.com", "c@example.com"], 0.0)  # alone in its second: allowed, whatever its recipients
    with pytest.raises(ses.Throttling):
        _send(backend, ["a@example.com"], 0.5)
