"""One reading of the organisation per command: shared between units and threads, refusals kept, other failures
not, and read afresh when told the organisation changed."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from loginwatch_org.aws.executor import AccountResult, DriftResult
from loginwatch_org.aws.organization import OrganizationReader, OrganizationScope
from loginwatch_org.config import Config
from loginwatch_org.plan import Plan, forwarders_unit
from loginwatch_org.state import DeployedInstance, OrganizationAccount, OrganizationView, Snapshot
from loginwatch_org.workflow import drifted_accounts
from tests.doubles.organizations import OrganizationsDouble
from tests.orgs import MANAGEMENT_ACCOUNT, account_ids, config_for, organization

ROOT = OrganizationScope()


def _error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, "ListAccounts")  # type: ignore[arg-type]


def _organization(count: int = 45) -> OrganizationsDouble:
    return OrganizationsDouble(layout=organization(count), management_account=MANAGEMENT_ACCOUNT)


def test_two_units_asking_at_once_share_one_listing() -> None:
    org = _organization()
    one_listing = (45 + 1) // 20 + 1 + 1  # pages of 20 (the management account too), and DescribeOrganization
    slow_list = org.list_accounts

    def list_accounts(**kwargs: Any) -> Any:
        time.sleep(0.05)  # long enough for the second reader to ask while the first is reading
        return slow_list(**kwargs)

    org.list_accounts = list_accounts  # type: ignore[method-assign]
    reader = OrganizationReader(org)
    views: list[OrganizationView] = []
    threads = [threading.Thread(target=lambda: views.append(reader.accounts(ROOT))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert org.count() == one_listing
    assert views[0] is views[1] and len(views[0].accounts) == 46


def test_a_refusal_is_kept_but_another_failure_is_tried_again() -> None:
    org = _organization()
    answers = [_error("TooManyRequestsException"), _error("AccessDeniedException")]

    def list_accounts(**_kwargs: Any) -> Any:
        org.calls.append("list_accounts")
        raise answers.pop(0)

    org.list_accounts = list_accounts  # type: ignore[method-assign]
    reader = OrganizationReader(org)
    with pytest.raises(ClientError, match="TooManyRequests"):
        reader.accounts(ROOT)
    with pytest.raises(ClientError, match="AccessDenied"):
        reader.accounts(ROOT)  # read again: throttling says nothing about the next call
    with pytest.raises(ClientError, match="AccessDenied"):
        reader.accounts(ROOT)  # not read again: it would be refused again
    assert org.count("list_accounts") == 2


def test_forget_reads_the_organisation_afresh() -> None:
    org = _organization()
    reader = OrganizationReader(org)
    victim = account_ids(45)[3]
    assert reader.accounts(ROOT).state_of(victim) == "ACTIVE"
    org.set_state(victim, "SUSPENDED")
    assert reader.accounts(ROOT).state_of(victim) == "ACTIVE"  # the command's one reading
    reader.forget()
    assert reader.accounts(ROOT).state_of(victim) == "SUSPENDED"


def test_membership_is_answered_from_a_whole_organisation_listing_without_more_calls() -> None:
    org = _organization(8)
    reader = OrganizationReader(org)
    view = reader.accounts(ROOT)
    calls = org.count()
    assert reader.outside(["777788889999", account_ids(8)[0]], known=view) == {"777788889999"}
    assert org.count() == calls


# -- drifted forwarders ---------------------------------------------------------------------------------------------


def _forwarder(account: str, region: str, drift: str) -> DeployedInstance:
    return DeployedInstance(account, region, "CURRENT", "SUCCEEDED", drift_status=drift)


def _config() -> Config:
    return config_for(4, 2)


def test_drifted_forwarders_name_their_regions_and_leave_suspended_and_unlisted_accounts_out() -> None:
    config = _config()
    drifted, suspended, healthy = account_ids(4)[:3]
    unlisted = "444455556666"
    view = OrganizationView(
        {a: OrganizationAccount(a, "", "SUSPENDED" if a == suspended else "ACTIVE") for a in account_ids(4)}
    )
    snapshot = Snapshot(
        None,
        (
            _forwarder(drifted, "eu-west-1", "DRIFTED"),
            _forwarder(drifted, "ap-south-1", "DRIFTED"),
            _forwarder(drifted, "us-west-2", "IN_SYNC"),
            _forwarder(suspended, "eu-west-1", "DRIFTED"),
            _forwarder(unlisted, "eu-west-1", "DRIFTED"),
            _forwarder(healthy, "eu-west-1", "IN_SYNC"),
        ),
        organization=view,
    )
    unit = forwarders_unit(config)
    plan = Plan(unit.name, (), unit=unit.key)
    assert drifted_accounts(config, unit, plan, snapshot) == {drifted: "forwarders drifted in ap-south-1, eu-west-1"}


def test_regions_drift_detection_failed_in_are_named_instead_of_an_older_drift_status() -> None:
    config = _config()
    account = account_ids(4)[0]
    snapshot = Snapshot(
        None, (_forwarder(account, "eu-west-1", "DRIFTED"), _forwarder(account, "eu-west-2", "DRIFTED"))
    )
    detection = DriftResult(
        "op",
        "FAILED",
        "FAILED",
        (AccountResult(account, "eu-west-1", "FAILED", "x"), AccountResult(account, "sa-east-1", "FAILED", "y")),
    )
    unit = forwarders_unit(config)
    assert drifted_accounts(config, unit, Plan(unit.name, ()), snapshot, detection) == {
        account: "forwarders drifted in eu-west-2; drift detection of its forwarders failed in eu-west-1, sa-east-1"
    }
