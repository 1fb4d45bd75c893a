"""Each ``doctor`` check on facts: pass, fail (with the fix) and cannot-check (with the reason). No AWS."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from loginwatch_org.aws.prerequisites import allows_send_email, logs_management_writes
from loginwatch_org.config import Config, load_config
from loginwatch_org.doctor import (
    AlarmTopic,
    CheckResult,
    Facts,
    SesSender,
    Trail,
    Unknown,
    all_passed,
    check_administration_role,
    check_alarm_action,
    check_cloudtrail,
    check_delegated_admin,
    check_execution_roles,
    check_regions_enabled,
    check_ses_authorization,
    check_ses_configuration_set,
    check_ses_identity,
    check_ses_production,
    check_ses_suppression,
    check_trusted_access,
    deployed_regions,
    evaluate,
    render_json,
    render_text,
)

MANAGEMENT = "999988887777"
MEMBERS = ("111122223333", "222233334444")
DENIED = Unknown("cloudtrail:DescribeTrails failed (AccessDeniedException: not authorized)")
TOPIC = "arn:aws:sns:us-east-1:999988887777:security-paging"
IDENTITY_ARN = "arn:aws:ses:eu-west-1:999988887777:identity/example.com"


def _config(write_config: Callable[[str], Path], *, extra_delivery: str = "", stack_set: str = "") -> Config:
    return load_config(
        write_config(
            f"""
            stack_set:
              regions: [us-east-1, eu-west-1]
              organizational_units: [r-ab12]
            {stack_set}
            delivery:
              sender: alerts@example.com
            {extra_delivery}
            defaults:
              recipients: [security@example.com]
            accounts:
              - id: "{MEMBERS[0]}"
                name: one
              - id: "{MEMBERS[1]}"
                name: two
            """
        )
    )


@pytest.fixture
def config(write_config: Callable[[str], Path]) -> Config:
    return _config(write_config, extra_delivery=f"  alarm_topic_arn: {TOPIC}")


def _trail(**changes: object) -> Trail:
    trail = Trail("org", "us-east-1", multi_region=True, organization=True, logging=True, management_events=True)
    return replace(trail, **changes)  # type: ignore[arg-type]


def _sender(account: str, region: str, **changes: object) -> SesSender:
    sender = SesSender(account, region, "alerts@example.com", True, True, True)
    return replace(sender, **changes)  # type: ignore[arg-type]


def _healthy(config: Config) -> Facts:
    regions = list(config.stack_set.regions)
    return Facts(
        caller_account=MANAGEMENT,
        trusted_access=True,
        trails=(_trail(),),
        ses=tuple(_sender(a, r) for a in MEMBERS for r in regions),
        alarm_topic=AlarmTopic(TOPIC, exists=True, confirmed_subscriptions=2),
        region_status={a: dict.fromkeys(regions, "ENABLED_BY_DEFAULT") for a in MEMBERS},
    )


def _one(result: CheckResult | None) -> CheckResult:
    assert result is not None
    return result


def test_a_healthy_organisation_passes_every_check(config: Config) -> None:
    results = evaluate(config, _healthy(config))
    assert [r.check for r in results] == [
        "StackSets trusted access with Organizations",
        "CloudTrail trail for sign-in events",
        "SES sender identity verified",
        "SES production access",
        "Dead-letter alarm action",
        "Watch Regions enabled",
    ]
    assert all_passed(results), render_text(results)
    assert render_text(results).endswith("6 of 6 check(s) passed.")
    assert json.loads(render_json(results))["passed"] is True


def test_trusted_access(config: Config) -> None:
    facts = _healthy(config)
    assert _one(check_trusted_access(config, facts)).status == "pass"
    off = _one(check_trusted_access(config, replace(facts, trusted_access=False)))
    assert off.status == "fail"
    assert "aws cloudformation activate-organizations-access" in off.fix
    denied = _one(check_trusted_access(config, replace(facts, trusted_access=Unknown("AccessDenied: no"))))
    assert (denied.status, denied.detail) == ("cannot-check", "AccessDenied: no")
    assert "allow cloudformation:DescribeOrganizationsAccess to the caller" in denied.fix


def test_delegated_admin_only_with_call_as_delegated_admin(write_config: Callable[[str], Path]) -> None:
    plain = _config(write_config)
    assert check_delegated_admin(plain, Facts(caller_account=MANAGEMENT)) is None
    config = _config(write_config, stack_set="  call_as: delegated-admin")
    caller = "123456789012"
    registered = Facts(caller_account=caller, delegated_admins=frozenset({caller}))
    assert _one(check_delegated_admin(config, registered)).status == "pass"
    missing = _one(check_delegated_admin(config, replace(registered, delegated_admins=frozenset())))
    assert missing.status == "fail"
    assert f"--account-id {caller}" in missing.fix
    assert "member.org.stacksets.cloudformation.amazonaws.com" in missing.fix
    unknown = _one(check_delegated_admin(config, replace(registered, delegated_admins=Unknown("denied"))))
    assert unknown.status == "cannot-check"


def test_self_managed_roles(write_config: Callable[[str], Path]) -> None:
    config = load_config(
        write_config(
            f"""
            stack_set:
              permission_model: self-managed
            delivery:
              sender: alerts@example.com
            defaults:
              recipients: [security@example.com]
            accounts:
              - id: "{MEMBERS[0]}"
                name: one
              - id: "{MEMBERS[1]}"
                name: two
            """
        )
    )
    facts = Facts(
        caller_account=MANAGEMENT,
        administration_role=True,
        execution_roles=dict.fromkeys(MEMBERS, True),
    )
    assert check_trusted_access(config, facts) is None
    assert _one(check_administration_role(config, facts)).status == "pass"
    assert _one(check_execution_roles(config, facts)).status == "pass"

    no_admin = _one(check_administration_role(config, replace(facts, administration_role=False)))
    assert no_admin.status == "fail"
    assert "AWSCloudFormationStackSetAdministrationRole" in no_admin.detail
    missing = _one(check_execution_roles(config, replace(facts, execution_roles={MEMBERS[0]: True, MEMBERS[1]: False})))
    assert missing.status == "fail"
    assert MEMBERS[1] in missing.detail and MEMBERS[0] not in missing.detail
    assert f"ParameterValue={MANAGEMENT}" in missing.fix
    unreadable: dict[str, bool | Unknown] = {MEMBERS[0]: True, MEMBERS[1]: Unknown("cannot assume the role")}
    unknown = _one(check_execution_roles(config, replace(facts, execution_roles=unreadable)))
    assert unknown.status == "cannot-check"
    assert f"{MEMBERS[1]}: cannot assume the role" in unknown.detail


@pytest.mark.parametrize(
    ("trails", "problem"),
    [
        ((), "no trail that is logging management events applies to this Region"),
        ((_trail(logging=False),), "no trail that is logging"),
        ((_trail(management_events=False),), "no trail that is logging management events"),
        ((_trail(multi_region=False),), "eu-west-1: no trail"),
        ((_trail(organization=False),), "records only account 999988887777"),
    ],
)
def test_cloudtrail_fails_without_a_trail_covering_every_account_and_region(
    config: Config, trails: tuple[Trail, ...], problem: str
) -> None:
    result = check_cloudtrail(config, replace(_healthy(config), trails=trails))
    assert result.status == "fail"
    assert problem in result.detail
    assert "--is-organization-trail" in result.fix
    assert "--is-multi-region-trail" in result.fix


def test_cloudtrail_passes_with_single_region_organisation_trails_in_each_region(config: Config) -> None:
    # Watches and forwarders alike: EventBridge sees a sign-in only where CloudTrail records it.
    trails = tuple(
        _trail(name=f"trail-{region}", multi_region=False, home_region=region) for region in deployed_regions(config)
    )
    assert check_cloudtrail(config, replace(_healthy(config), trails=trails)).status == "pass"


def test_cloudtrail_fails_when_a_forward_region_has_no_trail(config: Config) -> None:
    trails = (
        _trail(name="east", multi_region=False),
        _trail(name="west", multi_region=False, home_region="eu-west-1"),
    )
    result = check_cloudtrail(config, replace(_healthy(config), trails=trails))
    assert result.status == "fail"
    assert "us-east-2" in result.detail


def test_cloudtrail_cannot_check_when_trails_or_their_status_are_unreadable(config: Config) -> None:
    denied = check_cloudtrail(config, replace(_healthy(config), trails=DENIED))
    assert (denied.status, denied.detail) == ("cannot-check", DENIED.reason)
    status_unknown = replace(_healthy(config), trails=(_trail(logging=Unknown("GetTrailStatus denied")),))
    result = check_cloudtrail(config, status_unknown)
    assert result.status == "cannot-check"
    assert "org: GetTrailStatus denied" in result.detail


def test_ses_identity_and_production_access(config: Config) -> None:
    facts = _healthy(config)
    assert _one(check_ses_identity(config, facts)).status == "pass"
    assert _one(check_ses_production(config, facts)).status == "pass"
    sandboxed = replace(facts, ses=(_sender(MEMBERS[0], "eu-west-1", production_access=False), *facts.ses[1:]))
    result = _one(check_ses_production(config, sandboxed))
    assert result.status == "fail"
    assert f"{MEMBERS[0]}/eu-west-1" in result.detail
    assert "SES sandbox" in result.detail
    assert "aws sesv2 put-account-details --production-access-enabled" in result.fix
    paused = replace(facts, ses=(_sender(MEMBERS[0], "us-east-1", sending_enabled=False),))
    assert _one(check_ses_production(config, paused)).status == "fail"
    unverified = replace(facts, ses=(_sender(MEMBERS[1], "us-east-1", verified=False),))
    result = _one(check_ses_identity(config, unverified))
    assert result.status == "fail"
    assert "aws sesv2 create-email-identity --email-identity alerts@example.com" in result.fix
    unknown = replace(
        facts,
        ses=(
            _sender(
                MEMBERS[1], "us-east-1", verified=Unknown("cannot assume"), production_access=Unknown("cannot assume")
            ),
        ),
    )
    assert _one(check_ses_identity(config, unknown)).status == "cannot-check"
    assert _one(check_ses_production(config, unknown)).detail == f"{MEMBERS[1]}/us-east-1: cannot assume"
    assert "allow sesv2:GetAccount" in _one(check_ses_production(config, unknown)).fix


def test_ses_sending_authorization_only_with_an_identity_arn(
    config: Config, write_config: Callable[[str], Path]
) -> None:
    assert check_ses_authorization(config, _healthy(config)) is None
    authorized = _config(write_config, extra_delivery=f"  ses_identity_arn: {IDENTITY_ARN}")
    sender = SesSender(MANAGEMENT, "eu-west-1", "example.com", True, True, True, authorizes_sending=True)
    facts = replace(_healthy(authorized), ses=(sender,))
    assert _one(check_ses_authorization(authorized, facts)).status == "pass"
    missing = _one(
        check_ses_authorization(authorized, replace(facts, ses=(replace(sender, authorizes_sending=False),)))
    )
    assert missing.status == "fail"
    assert "create-email-identity-policy --email-identity example.com" in missing.fix
    assert IDENTITY_ARN in missing.fix


def test_sending_policies_and_event_selectors_are_read_as_aws_means_them() -> None:
    allow = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "ses:SendEmail"}]}
    deny = {"Statement": [{"Effect": "Deny", "Action": ["ses:SendEmail"]}]}
    raw_only = {"Statement": {"Effect": "Allow", "Action": ["ses:SendRawEmail"]}}
    assert allows_send_email({"p": json.dumps(allow)})
    assert not allows_send_email({"p": json.dumps(deny), "q": json.dumps(raw_only)})
    assert not allows_send_email(None)

    assert logs_management_writes({"EventSelectors": [{"ReadWriteType": "All", "IncludeManagementEvents": True}]})
    assert logs_management_writes({"EventSelectors": [{"ReadWriteType": "WriteOnly"}]})
    assert not logs_management_writes({"EventSelectors": [{"ReadWriteType": "ReadOnly"}]})
    assert not logs_management_writes({"EventSelectors": [{"IncludeManagementEvents": False}]})
    management = {"Field": "eventCategory", "Equals": ["Management"]}
    assert logs_management_writes({"AdvancedEventSelectors": [{"FieldSelectors": [management]}]})
    read_only = {"Field": "readOnly", "Equals": ["true"]}
    assert not logs_management_writes({"AdvancedEventSelectors": [{"FieldSelectors": [management, read_only]}]})
    no_signin = {"Field": "eventSource", "NotEquals": ["signin.amazonaws.com"]}
    assert not logs_management_writes({"AdvancedEventSelectors": [{"FieldSelectors": [management, no_signin]}]})
    assert not logs_management_writes({})


def test_alarm_action(config: Config, write_config: Callable[[str], Path]) -> None:
    facts = _healthy(config)
    assert check_alarm_action(config, facts).status == "pass"
    unset = _config(write_config)
    result = check_alarm_action(unset, replace(facts, alarm_topic=None))
    assert result.status == "fail"
    assert "reaches nobody" in result.detail
    assert "delivery.alarm_topic_arn" in result.fix
    nobody = check_alarm_action(config, replace(facts, alarm_topic=AlarmTopic(TOPIC, True, 0)))
    assert nobody.status == "fail"
    assert f"aws sns subscribe --topic-arn {TOPIC}" in nobody.fix
    gone = check_alarm_action(config, replace(facts, alarm_topic=AlarmTopic(TOPIC, False, 0)))
    assert (gone.status, gone.detail) == ("fail", f"{TOPIC} does not exist")
    assert check_alarm_action(config, replace(facts, alarm_topic=Unknown("denied"))).status == "cannot-check"


def test_regions_enabled(config: Config) -> None:
    facts = _healthy(config)
    assert _one(check_regions_enabled(config, facts)).status == "pass"
    opt_in = {
        MEMBERS[0]: {"us-east-1": "ENABLED_BY_DEFAULT", "eu-west-1": "DISABLED"},
        MEMBERS[1]: {"eu-west-1": "ENABLED"},
    }
    result = _one(check_regions_enabled(config, replace(facts, region_status=opt_in)))
    assert result.status == "fail"
    assert result.detail == f"1 account/Region(s) not enabled: {MEMBERS[0]}/eu-west-1 (DISABLED)"
    assert "aws account enable-region" in result.fix
    unknown = {MEMBERS[0]: {"eu-west-1": Unknown("cannot assume")}}
    assert _one(check_regions_enabled(config, replace(facts, region_status=unknown))).status == "cannot-check"


def test_text_and_json_show_status_reason_and_fix(config: Config) -> None:
    results = evaluate(config, replace(_healthy(config), trails=(), trusted_access=Unknown("AccessDenied")))
    text = render_text(results)
    assert "[FAIL] CloudTrail trail for sign-in events: " in text
    assert "    fix: from the management account: aws cloudtrail create-trail" in text
    assert "[CANNOT CHECK] StackSets trusted access with Organizations: AccessDenied" in text
    assert text.endswith("4 of 6 check(s) passed.")
    document = json.loads(render_json(results))
    assert document["passed"] is False
    statuses = {c["check"]: c["status"] for c in document["checks"]}
    assert statuses["CloudTrail trail for sign-in events"] == "fail"
    assert statuses["StackSets trusted access with Organizations"] == "cannot-check"
    assert all(set(c) == {"check", "status", "detail", "fix"} for c in document["checks"])


# --- a mail account sends for everyone ---------------------------------------------------------------------------

MAIL_ACCOUNT = "999988887777"
MAIL_IDENTITY = f"arn:aws:ses:eu-west-1:{MAIL_ACCOUNT}:identity/example.com"


def _mail_config(write_config: Callable[[str], Path], extra: str = "") -> Config:
    return _config(
        write_config,
        extra_delivery=f'  mail_account: "{MAIL_ACCOUNT}"\n              ses_identity_arn: {MAIL_IDENTITY}{extra}',
    )


class _FakeSes:
    """SESv2 as GetAccount and GetEmailIdentity answer it, for one account and Region."""

    def __init__(self, configuration_set: str | None) -> None:
        self._configuration_set = configuration_set

    def get_account(self) -> dict[str, object]:
        return {"ProductionAccessEnabled": True, "SendingEnabled": True}

    def get_email_identity(self, EmailIdentity: str) -> dict[str, object]:
        answer: dict[str, object] = {"VerifiedForSendingStatus": True, "Policies": {}}
        if self._configuration_set is not None:
            answer["ConfigurationSetName"] = self._configuration_set
        return answer


class _FakeReader:
    """Hands out SESv2 clients and remembers where doctor looked."""

    def __init__(self, configuration_set: str | None = None) -> None:
        self.asked: list[tuple[str, str, str]] = []
        self._configuration_set = configuration_set

    def client(self, account: str, service: str, region: str) -> _FakeSes:
        self.asked.append((account, service, region))
        return _FakeSes(self._configuration_set)


def test_with_a_mail_account_ses_is_read_in_the_mail_account_and_its_region_only(
    write_config: Callable[[str], Path],
) -> None:
    from loginwatch_org.aws.prerequisites import _ses_senders

    config = _mail_config(write_config)
    reader = _FakeReader(configuration_set="tracking")
    [sender] = _ses_senders(reader, config, {})  # type: ignore[arg-type]
    assert {(account, region) for account, _, region in reader.asked} == {(MAIL_ACCOUNT, "eu-west-1")}
    assert (sender.account, sender.region, sender.identity) == (MAIL_ACCOUNT, "eu-west-1", "example.com")
    # The mail account sends with its own identity: no sending-authorization policy is involved.
    assert sender.authorizes_sending is None
    assert sender.configuration_set == "tracking"
    facts = replace(_healthy(config), ses=(sender,), alarm_topic=None)
    assert check_ses_authorization(config, facts) is None
    production = _one(check_ses_production(config, facts))
    assert production.status == "pass" and f"{MAIL_ACCOUNT}/eu-west-1" in production.detail
    assert MEMBERS[0] not in production.detail


def test_an_identity_without_a_default_configuration_set_reads_as_none(write_config: Callable[[str], Path]) -> None:
    from loginwatch_org.aws.prerequisites import _ses_senders

    [sender] = _ses_senders(_FakeReader(), _mail_config(write_config), {})  # type: ignore[arg-type]
    assert sender.configuration_set == ""


def test_the_identitys_default_configuration_set_must_be_the_configured_one(
    write_config: Callable[[str], Path],
) -> None:
    config = _mail_config(write_config, "\n              configuration_set: tracking")
    sender = _sender(MAIL_ACCOUNT, "eu-west-1", identity="example.com", configuration_set="tracking")
    facts = replace(_healthy(config), ses=(sender,))
    assert _one(check_ses_configuration_set(config, facts)).status == "pass"

    other = _one(check_ses_configuration_set(config, replace(facts, ses=(replace(sender, configuration_set="x"),))))
    assert other.status == "fail"
    assert "has the default configuration set x, but delivery.configuration_set is tracking" in other.detail
    assert "AccessDenied" in other.detail and "configuration_set: x" in other.fix

    unset = _mail_config(write_config)
    missing = _one(check_ses_configuration_set(unset, facts))
    assert missing.status == "fail" and "delivery.configuration_set is not set" in missing.detail
    assert "set delivery.configuration_set: tracking" in missing.fix
    none = replace(facts, ses=(replace(sender, configuration_set=""),))
    assert _one(check_ses_configuration_set(unset, none)).status == "pass"
    stale = _one(check_ses_configuration_set(config, none))
    assert stale.status == "fail" and "has no default configuration set" in stale.detail

    unread = replace(facts, ses=(replace(sender, configuration_set=Unknown("denied")),))
    assert _one(check_ses_configuration_set(config, unread)).status == "cannot-check"


def test_the_configuration_set_check_needs_a_mail_account(config: Config) -> None:
    facts = replace(_healthy(config), ses=(_sender(MEMBERS[0], "us-east-1", configuration_set="x"),))
    assert check_ses_configuration_set(config, facts) is None


def test_with_a_mail_account_undeliverable_alerts_reach_the_alarm_recipients(
    write_config: Callable[[str], Path],
) -> None:
    config = _mail_config(write_config, "\n              alarm_recipients: [oncall@example.com]")
    result = check_alarm_action(config, replace(_healthy(config), alarm_topic=None))
    assert result.status == "pass"
    assert MAIL_ACCOUNT in result.detail and "oncall@example.com" in result.detail


def test_a_suppressed_recipient_is_named_with_its_reason_and_the_command_that_frees_it(config: Config) -> None:
    clean = SesSender(MANAGEMENT, "us-east-1", "example.com", True, True, True, suppressed={})
    listed = replace(clean, suppressed={"oncall@example.com": "COMPLAINT"})
    assert check_ses_suppression(config, replace(_healthy(config), ses=())) is None  # not read: not judged
    assert _one(check_ses_suppression(config, replace(_healthy(config), ses=(clean,)))).passed
    failed = _one(check_ses_suppression(config, replace(_healthy(config), ses=(clean, listed))))
    assert failed.status == "fail"
    assert failed.detail == (
        "SES accepts and silently drops alerts to 1 recipient(s): "
        f"oncall@example.com (COMPLAINT, in {MANAGEMENT}/us-east-1)"
    )
    assert "aws sesv2 delete-suppressed-destination --email-address oncall@example.com --region us-east-1" in failed.fix
    unread = replace(clean, suppressed=Unknown("AccessDenied"))
    unknown = _one(check_ses_suppression(config, replace(_healthy(config), ses=(unread,))))
    assert unknown.status == "cannot-check" and "sesv2:GetSuppressedDestination" in unknown.fix
