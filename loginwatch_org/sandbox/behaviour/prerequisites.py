"""The prerequisites ``doctor`` checks, emulated: what moto lacks for them, and a passing starting point.

moto already serves CloudTrail trails (status, event selectors), SES identities and their policies,
Organizations service access and delegated administrators. Added here:

* SESv2 ``GetAccount`` and ``PutAccountDetails``: each account and Region is in the SES sandbox until given
  production access, as new AWS accounts are. Asking for production access with ``PutAccountDetails`` does
  not grant it (AWS reviews the request); turning it off does, so a test can break it.
  https://docs.aws.amazon.com/ses/latest/APIReference-V2/API_GetAccount.html
  https://docs.aws.amazon.com/ses/latest/APIReference-V2/API_PutAccountDetails.html
* SESv2 ``GetEmailIdentity`` says a verified identity is ``VerifiedForSendingStatus``.
* Account Management ``ListRegions``: the Regions enabled by default are enabled, opt-in Regions are disabled
  until seeded as enabled.  https://docs.aws.amazon.com/accounts/latest/reference/API_ListRegions.html
  https://docs.aws.amazon.com/accounts/latest/reference/manage-acct-regions.html
* SNS ``GetTopicAttributes`` counts a topic's subscriptions (moto always says none): SQS, Lambda and other
  AWS endpoints are confirmed at once, email and HTTP(S) stay pending until the endpoint confirms (``sns``).
  https://docs.aws.amazon.com/sns/latest/api/API_GetTopicAttributes.html
  https://docs.aws.amazon.com/sns/latest/dg/SendMessageToHttp.confirm.html
* STS ``AssumeRole`` of a role that does not exist is refused (moto hands out credentials for any ARN), so a
  wrong ``--member-role`` is "cannot-check" in the sandbox as on AWS.
  https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html
* A new trail logs management events (read and write) until its event selectors say otherwise, as AWS does;
  moto reports no selector at all.
  https://docs.aws.amazon.com/awscloudtrail/latest/userguide/logging-management-events-with-cloudtrail.html

``seed(spec)`` starts the sandbox passing: an organisation trail (multi-Region, logging) in the management
account, production access in every account and Region of the organisation, the configured opt-in Regions
enabled, and the self-managed StackSets roles. (The server already verifies the sender everywhere and
activates StackSets trusted access.)
``PATCHES`` are installed by ``loginwatch_org.sandbox.behaviour`` with the others.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from moto.account import urls as account_urls
from moto.account.responses import AccountResponse
from moto.cloudtrail.models import Trail
from moto.core.responses import ActionResult
from moto.ses.models import EmailIdentity
from moto.sesv2 import urls as sesv2_urls
from moto.sesv2.responses import SESV2Response
from moto.sns.models import Topic
from moto.sts.exceptions import STSClientError
from moto.sts.models import STSBackend

from loginwatch_org.config import AWS_REGIONS
from loginwatch_org.sandbox.behaviour._core import Patches

if TYPE_CHECKING:
    from loginwatch_org.sandbox.server import OrganizationSpec

__all__ = ["ORGANIZATION_TRAIL", "PATCHES", "seed"]

ORGANIZATION_TRAIL: Final = "organization-trail"

# Regions every account has from the start; all others are opt-in (disabled until enabled).
# https://docs.aws.amazon.com/accounts/latest/reference/manage-acct-regions.html
DEFAULT_REGIONS: Final = frozenset(
    {
        "us-east-1", "us-east-2", "us-west-1", "us-west-2", "ap-south-1", "ap-northeast-1", "ap-northeast-2",
        "ap-northeast-3", "ap-southeast-1", "ap-southeast-2", "ca-central-1", "eu-central-1", "eu-west-1",
        "eu-west-2", "eu-west-3", "eu-north-1", "sa-east-1",
    }
)  # fmt: skip

# (account, Region) pairs with SES production access; opt-in Regions enabled per account.
_production_access: set[tuple[str, str]] = set()
_enabled_opt_in: dict[str, set[str]] = {}


# Knobs that lower the quota of an account with production access, to show a storm without sending thousands:
# read by the sandbox's own process, so set them for ``sandbox up``.
MAX_SEND_RATE_ENV: Final = "LOGINWATCH_SANDBOX_SES_MAX_SEND_RATE"
MAX_24H_SEND_ENV: Final = "LOGINWATCH_SANDBOX_SES_MAX_24H_SEND"


@dataclass(frozen=True)
class SendQuota:
    """What SES lets one account send in one Region. Quotas count recipients, not messages; the SES sandbox
    allows 200 a day, one a second, to verified addresses only; new production access starts at 50,000 a day
    and 14 a second (https://docs.aws.amazon.com/ses/latest/dg/quotas.html,
    https://docs.aws.amazon.com/ses/latest/dg/manage-sending-quotas.html)."""

    max_24_hour_send: float
    max_send_rate: float
    production: bool


def send_quota(account: str, region: str) -> SendQuota:
    if (account, region) not in _production_access:
        return SendQuota(200.0, 1.0, production=False)
    return SendQuota(
        min(50000.0, float(os.environ.get(MAX_24H_SEND_ENV) or 50000.0)),
        min(14.0, float(os.environ.get(MAX_SEND_RATE_ENV) or 14.0)),
        production=True,
    )


def _ses_get_account(self: SESV2Response) -> str:
    limits = send_quota(self.current_account, self.region)
    production = limits.production
    quota = {"Max24HourSend": limits.max_24_hour_send, "MaxSendRate": limits.max_send_rate}
    return json.dumps(
        {
            "DedicatedIpAutoWarmupEnabled": False,
            "EnforcementStatus": "HEALTHY",
            "ProductionAccessEnabled": production,
            "SendingEnabled": True,
            "SendQuota": {**quota, "SentLast24Hours": 0.0},
        }
    )


def _ses_put_account_details(self: SESV2Response) -> str:
    body = json.loads(self.body or "{}")
    if body.get("ProductionAccessEnabled") is False:
        _production_access.discard((self.current_account, self.region))
    return "{}"


def _region_status(account: str, region: str) -> str:
    if region in DEFAULT_REGIONS:
        return "ENABLED_BY_DEFAULT"
    return "ENABLED" if region in _enabled_opt_in.get(account, set()) else "DISABLED"


def _list_regions(self: AccountResponse) -> ActionResult:
    account = self._get_param("AccountId") or self.current_account
    wanted = self._get_param("RegionOptStatusContains") or []
    regions = [
        {"RegionName": region, "RegionOptStatus": _region_status(account, region)} for region in sorted(AWS_REGIONS)
    ]
    return ActionResult({"Regions": [r for r in regions if not wanted or r["RegionOptStatus"] in wanted]})


def _make_trail_init(original: Any) -> Any:
    @functools.wraps(original)
    def init(self: Trail, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.event_selectors = [
            {
                "ReadWriteType": "All",
                "IncludeManagementEvents": True,
                "DataResources": [],
                "ExcludeManagementEventSources": [],
            }
        ]

    return init


# Endpoints that must confirm a subscription themselves (an email subscriber with ConfirmSubscription).
_CONFIRMED_BY_ENDPOINT: Final = frozenset({"email", "email-json", "http", "https"})


def _count_subscriptions(pending: bool) -> property:
    def count(self: Topic) -> int:
        subscriptions = [s for s in self.sns_backend.subscriptions.values() if s.topic is self]
        return sum((s.protocol in _CONFIRMED_BY_ENDPOINT and not s.confirmed) == pending for s in subscriptions)

    # moto's Topic assigns the counters in __init__; those assignments are ignored.
    return property(count, lambda self, value: None)


_SESV2_PATHS: Final = {
    "{0}/v2/email/account$": SESV2Response.dispatch,
    "{0}/v2/email/account/details$": SESV2Response.dispatch,
}


# moto reports VerificationStatus SUCCESS but never VerifiedForSendingStatus; AWS reports both once verified.
# https://docs.aws.amazon.com/ses/latest/APIReference-V2/API_GetEmailIdentity.html
_verified_for_sending: Final = property(lambda self: self.verification_status == "SUCCESS", lambda self, value: None)


def _make_assume_role(original: Any) -> Any:
    @functools.wraps(original)
    def assume_role(self: STSBackend, *args: Any, **kwargs: Any) -> Any:
        from moto.iam.models import iam_backends
        from moto.utilities.utils import get_partition

        role_arn = str(kwargs["role_arn"] if "role_arn" in kwargs else args[2])
        region_name = str(kwargs["region_name"] if "region_name" in kwargs else args[0])
        account, path = role_arn.split(":", 5)[4:]
        roles = iam_backends[account][get_partition(region_name)].roles.values()
        if not any(role.arn == role_arn or role.name == path.rsplit("/", 1)[-1] for role in roles):
            raise STSClientError(
                "AccessDenied",
                f"User: arn:aws:iam::{self.account_id}:user/sandbox is not authorized to perform: sts:AssumeRole "
                f"on resource: {role_arn}",
            )
        return original(self, *args, **kwargs)

    return assume_role


#: What the sandbox changes about SES account status, Regions, trails, AssumeRole and SNS subscriptions.
PATCHES: Final = Patches()
for _owner, _name, _make in (
    (SESV2Response, "get_account", lambda _: _ses_get_account),
    (SESV2Response, "put_account_details", lambda _: _ses_put_account_details),
    (sesv2_urls, "url_paths", lambda original: {**original, **_SESV2_PATHS}),
    (EmailIdentity, "verified_for_sending_status", lambda _: _verified_for_sending),
    (AccountResponse, "list_regions", lambda _: _list_regions),
    (account_urls, "url_paths", lambda original: {**original, "{0}/listRegions$": AccountResponse.dispatch}),
    (Trail, "__init__", _make_trail_init),
    (STSBackend, "assume_role", _make_assume_role),
    (Topic, "subscriptions_confimed", lambda _: _count_subscriptions(pending=False)),
    (Topic, "subscriptions_pending", lambda _: _count_subscriptions(pending=True)),
):
    PATCHES.wrap(_owner, _name)(_make)


@PATCHES.on_revert
def _forget() -> None:
    _production_access.clear()
    _enabled_opt_in.clear()


def seed(spec: OrganizationSpec) -> None:
    """A passing setup: organisation trail, SES production access, the organisation's Regions enabled."""
    from moto.cloudtrail.models import cloudtrail_backends
    from moto.s3.models import s3_backends
    from moto.utilities.utils import get_partition

    from loginwatch_org.sandbox.server import DEFAULT_REGION

    management = spec.management_account
    accounts = [management, *spec.member_accounts]
    partition = get_partition(DEFAULT_REGION)
    bucket = f"loginwatch-sandbox-cloudtrail-{management}"
    s3_backends[management][partition].create_bucket(bucket, DEFAULT_REGION)
    cloudtrail = cloudtrail_backends[management][DEFAULT_REGION]
    cloudtrail.create_trail(
        name=ORGANIZATION_TRAIL,
        bucket_name=bucket,
        s3_key_prefix="",
        sns_topic_name="",
        is_global=True,
        is_multi_region=True,
        log_validation=True,
        is_org_trail=True,
        cw_log_group_arn="",
        cw_role_arn="",
        kms_key_id="",
        tags_list=[],
    )
    cloudtrail.start_logging(ORGANIZATION_TRAIL)
    _seed_stack_set_roles(management, spec.member_accounts)
    for account in accounts:
        for region in spec.regions:
            _production_access.add((account, region))
            if region not in DEFAULT_REGIONS:
                _enabled_opt_in.setdefault(account, set()).add(region)


def _seed_stack_set_roles(management: str, members: list[str]) -> None:
    """The roles self-managed stack sets need, as AWS's templates create them: the administration role in the
    management account (trusted by CloudFormation), the execution role in every member (trusted by it).
    https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/stacksets-prereqs-self-managed.html
    """
    from moto.iam.models import iam_backends

    def trust(principal: dict[str, str]) -> str:
        statement = {"Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole"}
        return json.dumps({"Version": "2012-10-17", "Statement": [statement]})

    roles = [(management, "AWSCloudFormationStackSetAdministrationRole", {"Service": "cloudformation.amazonaws.com"})]
    roles += [
        (m, "AWSCloudFormationStackSetExecutionRole", {"AWS": f"arn:aws:iam::{management}:root"}) for m in members
    ]
    for account, name, principal in roles:
        iam_backends[account]["aws"].create_role(name, trust(principal), "/", None, "", [], None)
