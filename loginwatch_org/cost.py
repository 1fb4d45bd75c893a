"""What the watch costs a month: one table of list prices, and the model that ``plan`` and
``bench/cost_model.py`` both price with.

Two kinds of cost. *Fixed*: what a deployed resource costs by existing, whether or not anyone signs in (an
alarm is billed every month). It is read from the templates themselves, resource type by resource type, so a
template that gains a resource gains its price here, and a type this module does not know fails the tests
instead of costing nothing. *Per sign-in*: what one alerted sign-in costs as it travels the chain (an event
forwarded from another Region, a topic publish, a function run, an email to each recipient).

List prices in us-east-1, without free tiers. "For billing purposes, AWS treats all of the accounts in the
organization as if they were one account"
(https://docs.aws.amazon.com/awsaccountbilling/latest/aboutv2/useconsolidatedbilling-effective.html), so an
allowance such as CloudWatch's 10 free alarms is the organisation's once, not each account's: counting it per
account would flatter a large organisation by exactly the amount that matters.
Pure: no AWS calls, no I/O.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# When the prices below were last checked against the pages they cite. The CloudWatch page's free-tier table
# was read on the page itself; the other figures are the published per-unit list prices as price sheets
# citing each page give them. A total built on them is an estimate: check the page before a budget is.
PRICES_READ = "2026-12-07"

CLOUDWATCH_PRICING = "https://aws.amazon.com/cloudwatch/pricing/"
SES_PRICING = "https://aws.amazon.com/ses/pricing/"
LAMBDA_PRICING = "https://aws.amazon.com/lambda/pricing/"
SNS_PRICING = "https://aws.amazon.com/sns/pricing/"
EVENTBRIDGE_PRICING = "https://aws.amazon.com/eventbridge/pricing/"
SQS_PRICING = "https://aws.amazon.com/sqs/pricing/"
KMS_PRICING = "https://aws.amazon.com/kms/pricing/"

DAYS_PER_MONTH = 30


@dataclass(frozen=True)
class Price:
    """One list price: ``usd`` for each ``unit``, as ``source`` gives it."""

    name: str
    usd: float
    unit: str
    source: str


ALARM = Price("CloudWatch alarm", 0.10, "standard-resolution alarm metric and month", CLOUDWATCH_PRICING)
KMS_KEY = Price("KMS customer managed key", 1.00, "key and month", KMS_PRICING)
SES_EMAIL = Price("SES outbound email", 0.10 / 1000, "email, each recipient counted", SES_PRICING)
LAMBDA_REQUEST = Price("Lambda request", 0.20 / 1_000_000, "invocation", LAMBDA_PRICING)
LAMBDA_GB_SECOND = Price("Lambda duration (x86)", 0.0000166667, "GB-second", LAMBDA_PRICING)
SNS_PUBLISH = Price("SNS publish", 0.50 / 1_000_000, "request (delivery to Lambda and SQS is free)", SNS_PRICING)
EVENTBRIDGE_EVENT = Price(
    "EventBridge event to another bus", 1.00 / 1_000_000, "event sent to a bus in another Region", EVENTBRIDGE_PRICING
)
LOGS_INGESTED = Price("CloudWatch Logs ingestion", 0.50, "GB ingested", CLOUDWATCH_PRICING)
SQS_REQUEST = Price("SQS request", 0.40 / 1_000_000, "request (standard queue)", SQS_PRICING)
# An SQS event source mapping polls its queue whether or not anything arrives: Lambda "uses long polling to poll a
# queue until it becomes active" and, when traffic is low, keeps five batches polling (it may go down to two,
# but not with maximum concurrency set): https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-scaling.html
# Each long poll waits at most 20 seconds (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/
# SQSDeveloperGuide/best-practices-setting-up-long-polling.html): five pollers, three receives a minute each.
IDLE_POLLERS = 5
IDLE_RECEIVES_A_MONTH = IDLE_POLLERS * 3 * 60 * 24 * DAYS_PER_MONTH
QUEUE_POLLING = Price(
    "SQS event source mapping polling",
    IDLE_RECEIVES_A_MONTH * SQS_REQUEST.usd,
    f"mapping and month ({IDLE_RECEIVES_A_MONTH:,} empty receives at the SQS request price)",
    SQS_PRICING,
)

PRICES: tuple[Price, ...] = (
    ALARM,
    KMS_KEY,
    SES_EMAIL,
    LAMBDA_REQUEST,
    LAMBDA_GB_SECOND,
    SNS_PUBLISH,
    EVENTBRIDGE_EVENT,
    LOGS_INGESTED,
    SQS_REQUEST,
    QUEUE_POLLING,
)


@dataclass(frozen=True)
class ResourcePrice:
    """What one resource of a type costs a month by existing (``price`` None: nothing) and why."""

    price: Price | None
    why: str

    @property
    def monthly_usd(self) -> float:
        return self.price.usd if self.price is not None else 0.0


# Every resource type a template may hold. A type missing here is a type nobody priced: ``unpriced_types``
# names it, and a test fails, so no resource joins every account and Region unpriced.
RESOURCE_PRICES: Mapping[str, ResourcePrice] = {
    # Billed per alarm metric: the dead-letter alarm's expressions read one metric, the queue's visible count.
    "AWS::CloudWatch::Alarm": ResourcePrice(ALARM, "billed for every month it exists, in alarm or not"),
    "AWS::KMS::Key": ResourcePrice(KMS_KEY, "billed for every month it exists"),
    "AWS::Events::Rule": ResourcePrice(None, "rules are free; events sent to another bus are priced per sign-in"),
    "AWS::Events::EventBus": ResourcePrice(None, "a custom bus costs only the events published to it"),
    "AWS::Events::EventBusPolicy": ResourcePrice(None, "a policy is free"),
    "AWS::IAM::Role": ResourcePrice(None, "IAM is free"),
    "AWS::Lambda::Function": ResourcePrice(None, "billed per invocation and duration, priced per sign-in"),
    "AWS::Lambda::Permission": ResourcePrice(None, "a policy is free"),
    "AWS::Lambda::EventInvokeConfig": ResourcePrice(None, "retry settings are free"),
    "AWS::Lambda::EventSourceMapping": ResourcePrice(QUEUE_POLLING, "Lambda polls the queue even while it is empty"),
    "AWS::Logs::LogGroup": ResourcePrice(None, "billed per GB ingested (priced per sign-in) and stored (a few KB)"),
    "AWS::SNS::Topic": ResourcePrice(None, "billed per publish, priced per sign-in"),
    "AWS::SNS::TopicPolicy": ResourcePrice(None, "a policy is free"),
    "AWS::SNS::Subscription": ResourcePrice(None, "delivery to Lambda and SQS is free; email notices are rare"),
    "AWS::SQS::Queue": ResourcePrice(
        None, "billed per request: an idle dead-letter queue receives none; polling a buffer is the mapping's"
    ),
    "AWS::SQS::QueuePolicy": ResourcePrice(None, "a policy is free"),
    # https://aws.amazon.com/ses/pricing/ (read 2026-12-07): configuration sets and event publishing to SNS carry
    # no SES charge; the SNS notices they publish are rare (a bounce or complaint of an alert).
    "AWS::SES::ConfigurationSet": ResourcePrice(None, "configuration sets are free"),
    "AWS::SES::ConfigurationSetEventDestination": ResourcePrice(None, "event publishing is free; notices are rare"),
}


def resource_types(resources: Mapping[str, Any]) -> dict[str, int]:
    """How many resources of each type a template's ``Resources`` section holds."""
    return dict(Counter(str(resource.get("Type", "")) for resource in resources.values()))


def body_resource_types(body: str) -> dict[str, int]:
    """``resource_types`` of a template body as CloudFormation hands it back: JSON as the tool sends it, or
    YAML; an unreadable body counts nothing."""
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = _load_tagged_yaml(body)
    resources = parsed.get("Resources") if isinstance(parsed, dict) else None
    return resource_types(resources) if isinstance(resources, dict) else {}


def _load_tagged_yaml(body: str) -> Any:
    """YAML with CloudFormation's short tags (``!Ref``, ``!Sub``) read as the plain values they tag: only the
    resource types matter here."""
    import yaml

    class TagTolerantLoader(yaml.SafeLoader):
        pass

    def untagged(loader: yaml.SafeLoader, _suffix: str, node: yaml.Node) -> Any:
        if isinstance(node, yaml.MappingNode):
            return loader.construct_mapping(node)
        if isinstance(node, yaml.SequenceNode):
            return loader.construct_sequence(node)
        return loader.construct_scalar(node)  # type: ignore[arg-type]

    TagTolerantLoader.add_multi_constructor("!", untagged)
    try:
        return yaml.load(body, Loader=TagTolerantLoader)
    except yaml.YAMLError:
        return None


def unpriced_types(types: Mapping[str, int]) -> list[str]:
    return sorted(kind for kind in types if kind not in RESOURCE_PRICES)


def fixed_monthly(types: Mapping[str, int]) -> float:
    """What one deployed copy of a template costs a month by existing (unpriced types count as nothing:
    ``unpriced_types`` is how they are caught)."""
    return sum(RESOURCE_PRICES[kind].monthly_usd * count for kind, count in types.items() if kind in RESOURCE_PRICES)


@dataclass(frozen=True)
class UnitCost:
    """One deployment unit: how many copies of its template are deployed, and what each costs by existing."""

    unit: str
    copies: int
    types: Mapping[str, int]

    @property
    def fixed_each(self) -> float:
        return fixed_monthly(self.types)

    @property
    def fixed_monthly(self) -> float:
        return self.copies * self.fixed_each

    def to_dict(self) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "copies": self.copies,
            "fixed_each_usd": round(self.fixed_each, 4),
            "fixed_monthly_usd": round(self.fixed_monthly, 2),
        }


@dataclass(frozen=True)
class CostChange:
    """The fixed monthly cost of what is deployed now, and of what the plan leaves deployed."""

    now: tuple[UnitCost, ...]
    after: tuple[UnitCost, ...]

    @property
    def now_usd(self) -> float:
        return sum(unit.fixed_monthly for unit in self.now)

    @property
    def after_usd(self) -> float:
        return sum(unit.fixed_monthly for unit in self.after)

    @property
    def change_usd(self) -> float:
        return self.after_usd - self.now_usd

    def summary(self) -> str:
        line = f"Fixed cost: {usd(self.after_usd)} a month"
        if round(self.change_usd, 2):
            line += f" after this plan ({signed_usd(self.change_usd)} from {usd(self.now_usd)} now)"
        else:
            line += " (unchanged by this plan)"
        return line + ", list prices; emails and events are extra (bench/cost_model.py)"

    def to_dict(self) -> dict[str, Any]:
        return {
            "fixed_monthly_usd_now": round(self.now_usd, 2),
            "fixed_monthly_usd_after": round(self.after_usd, 2),
            "fixed_monthly_usd_change": round(self.change_usd, 2),
            "prices_read": PRICES_READ,
            "units": [{"now": a.to_dict(), "after": b.to_dict()} for a, b in zip(self.now, self.after, strict=True)],
        }


@dataclass(frozen=True)
class SigninPath:
    """What one alerted sign-in uses on its way to the recipients' inboxes."""

    recipients: float = 2.0
    # Share of sign-ins recorded outside us-east-1 (forwarded there by a rule, one cross-Region event each).
    forwarded_share: float = 0.5
    memory_mb: int = 128
    # Billed duration of one notifier run: an SES call, or an STS call and an SES call in mail mode.
    run_seconds: float = 0.5
    log_bytes: int = 1_000


def per_signin_usd(path: SigninPath) -> dict[str, float]:
    """The cost of one alerted sign-in, by service."""
    return {
        "SES": path.recipients * SES_EMAIL.usd,
        "Lambda": LAMBDA_REQUEST.usd + path.memory_mb / 1024 * path.run_seconds * LAMBDA_GB_SECOND.usd,
        "SNS": SNS_PUBLISH.usd,
        "EventBridge": path.forwarded_share * EVENTBRIDGE_EVENT.usd,
        "Logs": path.log_bytes / 1e9 * LOGS_INGESTED.usd,
    }


def usd(value: float) -> str:
    return f"${value:,.2f}"


def signed_usd(value: float) -> str:
    return ("+" if value >= 0 else "-") + usd(abs(value))
