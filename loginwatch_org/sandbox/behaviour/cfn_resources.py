"""CloudFormation: the resource types moto skips.

moto creates nothing for a resource type it does not know, so a template's subscription, topic and
queue policies, asynchronous invocation settings, alarm, event bus policy and SES configuration set would
silently not exist.  Each class here
creates the real thing in the service's backend, and is found through the patched type lookup.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import re
from typing import Any, ClassVar, Final, Self, cast

from moto.awslambda.utils import get_backend as get_lambda_backend
from moto.cloudformation import parsing as cfn_parsing
from moto.cloudformation.exceptions import (
    UnformattedGetAttTemplateException,
)
from moto.cloudwatch.models import Dimension, Metric, MetricDataQuery, MetricStat, cloudwatch_backends
from moto.core.common_models import CloudFormationModel
from moto.sns.models import sns_backends
from moto.sqs.models import sqs_backends
from moto.utilities.arns import parse_arn

from loginwatch_org.sandbox.behaviour._core import Patches

logger = logging.getLogger(__name__)

PATCHES: Final = Patches()


class _AddedResource:
    """Base of the resource types the sandbox adds.

    Deliberately not a moto ``CloudFormationModel``: moto registers every subclass of that for
    good, while these are known only through the patched type lookup, and gone after ``revert()``.
    """

    #: The CloudFormation type, e.g. ``AWS::SNS::Subscription``.
    cfn_type: ClassVar[str]
    #: The instance attribute that holds the physical id (what ``Ref`` returns).
    physical_id_field: ClassVar[str]
    #: The one Fn::GetAtt attribute the type offers (None: none) and the instance attribute holding it.
    cfn_attribute: ClassVar[str | None] = None
    cfn_attribute_field: ClassVar[str] = ""

    @classmethod
    def cloudformation_type(cls) -> str:
        return cls.cfn_type

    @property
    def physical_resource_id(self) -> str:
        return str(getattr(self, self.physical_id_field))

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr == cls.cfn_attribute

    def get_cfn_attribute(self, attribute_name: str) -> str:
        if attribute_name != self.cfn_attribute:
            raise UnformattedGetAttTemplateException()
        return str(getattr(self, self.cfn_attribute_field))

    def is_created(self) -> bool:
        return True

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> Self:
        raise NotImplementedError

    @classmethod
    def update_from_cloudformation_json(
        cls,
        original_resource: Self,
        new_resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> Self:
        # Replacement: these resources have nothing worth keeping across an update.
        original_resource.delete(account_id, region_name)
        created = (new_resource_name, cloudformation_json, account_id, region_name)
        return cls.create_from_cloudformation_json(*created)

    def delete(self, account_id: str, region_name: str) -> None:
        raise NotImplementedError


def _json_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


class SnsSubscriptionResource(_AddedResource):
    """AWS::SNS::Subscription (moto skips it, so nothing is ever subscribed to the topic).

    https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-sns-subscription.html
    """

    cfn_type = "AWS::SNS::Subscription"
    physical_id_field = "arn"
    cfn_attribute = "Arn"
    cfn_attribute_field = "arn"

    # The scope first: moto validates a filter policy against the scope already set.
    _ATTRIBUTES: Final = (
        "FilterPolicyScope",
        "FilterPolicy",
        "RawMessageDelivery",
        "RedrivePolicy",
        "DeliveryPolicy",
        "SubscriptionRoleArn",
    )

    def __init__(self, arn: str) -> None:
        self.arn = arn

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> SnsSubscriptionResource:
        props = cloudformation_json["Properties"]
        topic = parse_arn(props["TopicArn"])
        backend = sns_backends[topic.account][topic.region]
        subscription = backend.subscribe(props["TopicArn"], props.get("Endpoint", ""), props["Protocol"])
        for attribute in cls._ATTRIBUTES:
            if attribute in props:
                backend.set_subscription_attributes(subscription.arn, attribute, _json_text(props[attribute]))
        return cls(subscription.arn)

    @classmethod
    def delete_from_cloudformation_json(
        cls, resource_name: str, cloudformation_json: dict[str, Any], account_id: str, region_name: str
    ) -> None:
        cls(resource_name).delete(account_id, region_name)

    def delete(self, account_id: str, region_name: str) -> None:
        parsed = parse_arn(self.arn)
        sns_backends[parsed.account][parsed.region].unsubscribe(self.arn)


class _PolicyAttachment(_AddedResource):
    """A policy document attached to each listed resource (a topic or queue policy); deleting it puts the
    resources' default policy back, as AWS does."""

    targets_property: ClassVar[str]
    physical_id_field = "policy_id"
    cfn_attribute = "Id"
    cfn_attribute_field = "policy_id"

    def __init__(self, policy_id: str, targets: list[str]) -> None:
        self.policy_id = policy_id
        self.targets = targets

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> Self:
        props = cloudformation_json["Properties"]
        targets = list(props.get(cls.targets_property) or [])
        for target in targets:
            cls._attach(target, _json_text(props["PolicyDocument"]), account_id, region_name)
        return cls(resource_name, targets)

    @classmethod
    def delete_from_cloudformation_json(
        cls, resource_name: str, cloudformation_json: dict[str, Any], account_id: str, region_name: str
    ) -> None:
        targets = list(cloudformation_json.get("Properties", {}).get(cls.targets_property) or [])
        cls(resource_name, targets).delete(account_id, region_name)

    def delete(self, account_id: str, region_name: str) -> None:
        for target in self.targets:
            with contextlib.suppress(Exception):
                self._detach(target, account_id, region_name)

    @classmethod
    def _attach(cls, target: str, policy: str, account_id: str, region_name: str) -> None:
        raise NotImplementedError

    @classmethod
    def _detach(cls, target: str, account_id: str, region_name: str) -> None:
        raise NotImplementedError


class SnsTopicPolicyResource(_PolicyAttachment):
    """AWS::SNS::TopicPolicy: sets the policy of each listed topic (moto skips it).

    https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-sns-topicpolicy.html
    """

    cfn_type = "AWS::SNS::TopicPolicy"
    targets_property = "Topics"

    @classmethod
    def _attach(cls, target: str, policy: str, account_id: str, region_name: str) -> None:
        parsed = parse_arn(target)
        sns_backends[parsed.account][parsed.region].set_topic_attribute(target, "policy", policy)

    @classmethod
    def _detach(cls, target: str, account_id: str, region_name: str) -> None:
        parsed = parse_arn(target)
        topic = sns_backends[parsed.account][parsed.region].get_topic(target)
        topic._policy_json = topic._create_default_topic_policy(parsed.region, parsed.account, topic.name)


class SqsQueuePolicyResource(_PolicyAttachment):
    """AWS::SQS::QueuePolicy: sets the policy of each listed queue (moto skips it).

    https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-sqs-queuepolicy.html
    """

    cfn_type = "AWS::SQS::QueuePolicy"
    targets_property = "Queues"

    @classmethod
    def _attach(cls, target: str, policy: str, account_id: str, region_name: str) -> None:
        # https://sqs.<region>.amazonaws.com/<account>/<name>
        parts = target.rstrip("/").split("/")
        queue_account = parts[-2] if len(parts) >= 2 and parts[-2].isdigit() else account_id
        match = re.search(r"sqs\.([a-z0-9-]+)\.", target)
        queue_region = match.group(1) if match else region_name
        sqs_backends[queue_account][queue_region].set_queue_attributes(parts[-1], {"Policy": policy})

    @classmethod
    def _detach(cls, target: str, account_id: str, region_name: str) -> None:
        cls._attach(target, "", account_id, region_name)


class LambdaEventInvokeConfigResource(_AddedResource):
    """AWS::Lambda::EventInvokeConfig: a function's asynchronous invocation settings (moto skips it).

    https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-lambda-eventinvokeconfig.html
    """

    _SETTINGS: Final = ("MaximumRetryAttempts", "MaximumEventAgeInSeconds", "DestinationConfig")

    cfn_type = "AWS::Lambda::EventInvokeConfig"
    physical_id_field = "config_id"

    def __init__(self, function_name: str, qualifier: str) -> None:
        self.function_name = function_name
        self.qualifier = qualifier
        self.config_id = f"{function_name}:{qualifier}"

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> LambdaEventInvokeConfigResource:
        props = cloudformation_json["Properties"]
        config = {key: props[key] for key in cls._SETTINGS if key in props}
        for key in ("MaximumRetryAttempts", "MaximumEventAgeInSeconds"):
            if key in config:
                config[key] = int(config[key])
        backend = get_lambda_backend(account_id, region_name)
        backend.put_function_event_invoke_config(props["FunctionName"], config)
        return cls(props["FunctionName"], str(props.get("Qualifier", "$LATEST")))

    @classmethod
    def delete_from_cloudformation_json(
        cls, resource_name: str, cloudformation_json: dict[str, Any], account_id: str, region_name: str
    ) -> None:
        props = cloudformation_json.get("Properties", {})
        cls(props.get("FunctionName", ""), "$LATEST").delete(account_id, region_name)

    def delete(self, account_id: str, region_name: str) -> None:
        with contextlib.suppress(Exception):
            backend = get_lambda_backend(account_id, region_name)
            backend.delete_function_event_invoke_config(self.function_name)


class CloudWatchAlarmResource(_AddedResource):
    """AWS::CloudWatch::Alarm on a single metric or a metric math expression (moto skips the type).

    https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-cloudwatch-alarm.html
    """

    cfn_type = "AWS::CloudWatch::Alarm"
    physical_id_field = "name"
    cfn_attribute = "Arn"
    cfn_attribute_field = "arn"

    def __init__(self, name: str, arn: str) -> None:
        self.name = name
        self.arn = arn

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> CloudWatchAlarmResource:
        props = cloudformation_json["Properties"]
        name = props.get("AlarmName") or resource_name

        def number(key: str) -> int | None:
            return int(props[key]) if key in props else None

        alarm = cloudwatch_backends[account_id][region_name].put_metric_alarm(
            name=name,
            namespace=props.get("Namespace", ""),
            metric_name=props.get("MetricName", ""),
            metric_data_queries=_metric_data_queries(props.get("Metrics") or []),
            comparison_operator=props["ComparisonOperator"],
            evaluation_periods=int(props["EvaluationPeriods"]),
            datapoints_to_alarm=number("DatapointsToAlarm"),
            period=int(props.get("Period", 60)),
            threshold=float(props.get("Threshold", 0)),
            statistic=props.get("Statistic", ""),
            extended_statistic=props.get("ExtendedStatistic"),
            description=props.get("AlarmDescription", ""),
            dimensions=list(props.get("Dimensions") or []),
            alarm_actions=list(props.get("AlarmActions") or []),
            ok_actions=list(props.get("OKActions") or []),
            insufficient_data_actions=list(props.get("InsufficientDataActions") or []),
            unit=props.get("Unit"),
            actions_enabled=str(props.get("ActionsEnabled", True)).lower() == "true",
            treat_missing_data=props.get("TreatMissingData"),
            evaluate_low_sample_count_percentile=props.get("EvaluateLowSampleCountPercentile"),
            threshold_metric_id=props.get("ThresholdMetricId"),
            rule=None,
            tags=list(props.get("Tags") or []) or None,
        )
        return cls(name, alarm.alarm_arn)

    @classmethod
    def update_from_cloudformation_json(
        cls,
        original_resource: CloudWatchAlarmResource,
        new_resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> CloudWatchAlarmResource:
        # An alarm keeps its generated name across updates; PutMetricAlarm overwrites it in place.
        props = cloudformation_json["Properties"]
        if props.get("AlarmName") not in (None, original_resource.name):
            return super().update_from_cloudformation_json(
                original_resource, new_resource_name, cloudformation_json, account_id, region_name
            )
        same_name = (original_resource.name, cloudformation_json, account_id, region_name)
        return cls.create_from_cloudformation_json(*same_name)

    @classmethod
    def delete_from_cloudformation_json(
        cls, resource_name: str, cloudformation_json: dict[str, Any], account_id: str, region_name: str
    ) -> None:
        cls(resource_name, "").delete(account_id, region_name)

    def delete(self, account_id: str, region_name: str) -> None:
        cloudwatch_backends[account_id][region_name].delete_alarms([self.name])


def _metric_data_queries(metrics: list[dict[str, Any]]) -> list[MetricDataQuery] | None:
    """``Metrics`` of an alarm template as moto's PutMetricAlarm models them."""
    queries = []
    for query in metrics:
        stat = query.get("MetricStat")
        metric_stat = None
        if stat:
            metric = stat["Metric"]
            dimensions = [Dimension(d["Name"], d["Value"]) for d in metric.get("Dimensions") or []]
            metric_stat = MetricStat(
                Metric(metric["MetricName"], metric["Namespace"], dimensions),
                str(stat.get("Period", 60)),
                stat.get("Stat", ""),
                stat.get("Unit"),
            )
        queries.append(
            MetricDataQuery(
                query["Id"],
                query.get("Label", ""),
                cast(str, query.get("Period")),  # None when absent, as moto's own PutMetricAlarm passes it
                str(query.get("ReturnData", True)).lower(),
                query.get("Expression"),
                metric_stat,
            )
        )
    return queries or None


class EventBusPolicyResource(_AddedResource):
    """AWS::Events::EventBusPolicy (moto skips it, so another account's events are never admitted).

    One statement of the bus's resource policy, either ``Statement`` or ``Action``/``Principal``/``Condition``;
    its ``StatementId`` is the physical id.
    https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-resource-events-eventbuspolicy.html
    """

    cfn_type = "AWS::Events::EventBusPolicy"
    physical_id_field = "statement_id"

    def __init__(self, statement_id: str, bus_name: str) -> None:
        self.statement_id = statement_id
        self.bus_name = bus_name

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> EventBusPolicyResource:
        from moto.events.models import EventBusPolicyStatement, events_backends

        props = cloudformation_json["Properties"]
        bus = events_backends[account_id][region_name].describe_event_bus(props.get("EventBusName") or "default")
        sid = str(props["StatementId"])
        statement = dict(props.get("Statement") or {})
        if not statement:
            principal = props["Principal"]
            condition = props.get("Condition")
            statement = {
                "Effect": "Allow",
                "Principal": principal if principal == "*" else {"AWS": f"arn:aws:iam::{principal}:root"},
                "Action": props["Action"],
                "Resource": bus.arn,
                **({"Condition": {condition["Type"]: {condition["Key"]: condition["Value"]}}} if condition else {}),
            }
        statement.setdefault("Resource", bus.arn)
        bus._statements[sid] = EventBusPolicyStatement.from_dict({**statement, "Sid": sid})
        return cls(sid, bus.name)

    @classmethod
    def delete_from_cloudformation_json(
        cls, resource_name: str, cloudformation_json: dict[str, Any], account_id: str, region_name: str
    ) -> None:
        props = cloudformation_json.get("Properties", {})
        cls(str(props.get("StatementId", resource_name)), props.get("EventBusName") or "default").delete(
            account_id, region_name
        )

    def delete(self, account_id: str, region_name: str) -> None:
        from moto.events.models import events_backends

        with contextlib.suppress(Exception):
            events_backends[account_id][region_name].describe_event_bus(self.bus_name).remove_statement(
                self.statement_id
            )


class SesConfigurationSetResource(_AddedResource):
    """AWS::SES::ConfigurationSet (moto skips it): a configuration set of the account's SES.

    https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-ses-configurationset.html
    """

    cfn_type = "AWS::SES::ConfigurationSet"
    physical_id_field = "name"

    def __init__(self, name: str) -> None:
        self.name = name

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> SesConfigurationSetResource:
        from moto.ses.models import ses_backends

        name = str(cloudformation_json["Properties"].get("Name") or resource_name)
        ses_backends[account_id][region_name].create_configuration_set(configuration_set_name=name)
        return cls(name)

    @classmethod
    def delete_from_cloudformation_json(
        cls, resource_name: str, cloudformation_json: dict[str, Any], account_id: str, region_name: str
    ) -> None:
        cls(str(cloudformation_json.get("Properties", {}).get("Name") or resource_name)).delete(account_id, region_name)

    def delete(self, account_id: str, region_name: str) -> None:
        from moto.ses.models import ses_backends

        with contextlib.suppress(Exception):
            ses_backends[account_id][region_name].delete_configuration_set(self.name)


class SesEventDestinationResource(_AddedResource):
    """AWS::SES::ConfigurationSetEventDestination (moto skips it): where a configuration set's events go.

    https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-ses-configurationseteventdestination.html
    """

    cfn_type = "AWS::SES::ConfigurationSetEventDestination"
    physical_id_field = "name"

    def __init__(self, configuration_set: str, name: str) -> None:
        self.configuration_set = configuration_set
        self.name = name

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> SesEventDestinationResource:
        from moto.ses.models import ses_backends

        props = cloudformation_json["Properties"]
        destination = dict(props["EventDestination"])
        ses_backends[account_id][region_name].create_configuration_set_event_destination(
            configuration_set_name=str(props["ConfigurationSetName"]), event_destination=destination
        )
        return cls(str(props["ConfigurationSetName"]), str(destination["Name"]))

    @classmethod
    def delete_from_cloudformation_json(
        cls, resource_name: str, cloudformation_json: dict[str, Any], account_id: str, region_name: str
    ) -> None:
        props = cloudformation_json.get("Properties", {})
        name = str((props.get("EventDestination") or {}).get("Name") or "")
        cls(str(props.get("ConfigurationSetName") or ""), name).delete(account_id, region_name)

    def delete(self, account_id: str, region_name: str) -> None:
        from moto.ses.models import ses_backends

        backend = ses_backends[account_id][region_name]
        backend.config_set_event_destination.pop(self.configuration_set, None)
        backend.event_destinations.pop(self.name, None)


_ADDED_RESOURCE_TYPES: Final[dict[str, type[_AddedResource]]] = {
    model.cfn_type: model
    for model in (
        SnsSubscriptionResource,
        SnsTopicPolicyResource,
        SqsQueuePolicyResource,
        LambdaEventInvokeConfigResource,
        CloudWatchAlarmResource,
        EventBusPolicyResource,
        SesConfigurationSetResource,
        SesEventDestinationResource,
    )
}


@PATCHES.wrap(cfn_parsing, "resource_class_from_type")
def _make_resource_class_from_type(original: Any) -> Any:
    @functools.wraps(original)
    def resource_class_from_type(resource_type: str) -> type[CloudFormationModel]:
        added = _ADDED_RESOURCE_TYPES.get(resource_type)
        if added is not None:
            return cast(type[CloudFormationModel], added)
        found: type[CloudFormationModel] = original(resource_type)
        return found

    return resource_class_from_type
