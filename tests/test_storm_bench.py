"""The storm model (``bench/storm_bench.py``) running the notifier's own code: nothing lost, bursts coalesced."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import storm_bench


def _scenario(name: str) -> storm_bench.Scenario:
    [scenario] = [s for s in storm_bench.SCENARIOS if s.name == name]
    return scenario


@pytest.mark.parametrize("name", ["storm", "storm-ses-sandbox"])
def test_a_storm_of_failed_sign_ins_is_a_few_emails_and_loses_nothing(name: str) -> None:
    outcome = storm_bench.run(_scenario(name))
    assert outcome.signins == 5000
    assert outcome.accounted_for == 5000 and outcome.dead_lettered == 0 and outcome.still_waiting == 0
    assert outcome.storm_account_emails <= 50
    assert outcome.first_alert_seconds is not None and outcome.first_alert_seconds <= 60
    assert outcome.targets_met()


def test_an_organisation_wide_incident_is_one_email_per_account_paced_by_ses() -> None:
    outcome = storm_bench.run(_scenario("org-incident"))
    assert outcome.most_emails_to_one_account == 1 and outcome.emails == 1000
    assert outcome.accounted_for == 1000 and outcome.dead_lettered == 0
    # 2,000 recipients at SES's 14 a second cannot all be mailed in under 143 s: the model does not cheat.
    assert max(outcome.delays) >= 2000 / 14
    assert outcome.targets_met()


def test_the_model_fails_a_design_that_loses_alerts(monkeypatch: pytest.MonkeyPatch) -> None:
    # A notifier that gives up at SES's first refusal parks alerts: the model must count them as lost.
    from loginwatch_org import notifier

    monkeypatch.setattr(notifier, "_error_kind", lambda exc: "never")
    outcome = storm_bench.run(_scenario("org-incident"))
    assert outcome.dead_lettered > 0
    assert not outcome.targets_met()
