"""Building blocks the templates share.

Each function adds one thing to a troposphere ``Template`` (with what it needs to be safe on its own) and
returns its handle, so a template module reads as a list of parts. Logical IDs are arguments with the
watch's names as defaults: a stack set update replaces any resource whose logical ID changes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

from troposphere import (
    AWSHelperFn,
    Equals,
    GetAtt,
    If,
    Not,
    Parameter,
    Ref,
    Template,
    awslambda,
    cloudwatch,
    events,
    iam,
    logs,
    sns,
    sqs,
)

LAMBDA_RUNTIME = "python3.14"
LOG_RETENTION_DAYS = 90
# EventBridge retries a failed delivery for up to 24 hours (185 attempts), then dead-letters the event.
# https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-rule-retry-policy.html
RULE_RETRY_ATTEMPTS = 185
RULE_MAX_EVENT_AGE = 24 * 3600
# A rule in state ENABLED never sees read-only management events delivered through CloudTrail; this state
# lets it match them too. Whether AWS counts CheckMfa as read-only is not documented (the published samples
# carry no readOnly field), and its failures must reach the watch either way; the pattern still decides what
# matches, so the rule sees no more sign-in events than it asks for.
# https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-service-event-cloudtrail-management.html
# https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_PutRule.html (State)
ALL_MANAGEMENT_EVENTS = "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS"

# The condition that is true when the alarm action parameter names a topic.
HAS_ALARM_ACTION = "HasAlarmAction"

# What a template property can hold: a literal, or an intrinsic function such as Ref or GetAtt.
Value: TypeAlias = AWSHelperFn | str | dict[str, Any] | list[Any]

# Reviewers run checkov on the exports. Where one of its checks does not fit this design, the resource says
# so, and why, in the Metadata form checkov reads (a skip is reported as skipped, never silently passed):
# https://www.checkov.io/2.Basics/Suppressing%20and%20Skipping%20Policies.html
# Most of them ask for a customer managed KMS key. Each costs about 1 USD a month, and the watch and its
# forwarders would need one in every account and region (some 17 per account: at 5,000 accounts, about
# 85,000 keys) to protect sign-in metadata that CloudTrail already holds under AWS-managed encryption.
SQS_MANAGED_ENCRYPTION = (
    "CKV_AWS_27",
    "Encrypted with SSE-SQS, which this check misses. An AWS managed key cannot admit EventBridge and SNS; a "
    "customer managed one costs 1 USD a month in every account and Region.",
)
LOG_GROUP_ENCRYPTION = (
    "CKV_AWS_158",
    "Logs are encrypted at rest; a customer managed key costs 1 USD a month per account. The notifier logs ids, "
    "outcomes and counts, never IP addresses or user agents.",
)
LAMBDA_ENVIRONMENT_ENCRYPTION = (
    "CKV_AWS_173",
    "Encrypted with an AWS managed key; sender, recipients and queue URLs are not secret, and a customer managed "
    "key costs 1 USD a month per account.",
)
LAMBDA_VPC = (
    "CKV_AWS_117",
    "No inbound traffic; it calls SES, SQS and IAM only. A VPC would need NAT or endpoints in every account "
    "(tens of USD a month) for nothing.",
)
LAMBDA_RESERVED_CONCURRENCY = (
    "CKV_AWS_115",
    "Reserving fails in accounts with a low concurrency quota (new accounts); the event source mapping already "
    "runs at most two batches at once.",
)


def checkov_skips(*skips: tuple[str, str]) -> dict[str, Any]:
    """Resource Metadata naming the checkov checks that do not apply to the resource, each with its reason."""
    return {"checkov": {"skip": [{"id": check, "comment": reason} for check, reason in skips]}}


def service_statement(sid: str, service: str, action: str, resource: Value, source_arn: Value) -> dict[str, Any]:
    """A resource-policy grant: this AWS service may do this action on this resource, for this source only.

    ``aws:SourceArn`` keeps another account's resource of the same service from using the grant (the
    confused-deputy problem): https://docs.aws.amazon.com/IAM/latest/UserGuide/confused-deputy.html
    """
    return {
        "Sid": sid,
        "Effect": "Allow",
        "Principal": {"Service": f"{service}.amazonaws.com"},
        "Action": action,
        "Resource": resource,
        "Condition": {"ArnEquals": {"aws:SourceArn": source_arn}},
    }


def identity_statement(sid: str, action: str | list[str], resource: Value) -> dict[str, Any]:
    """An identity-policy grant (a role's own permission): this action on this resource."""
    return {"Sid": sid, "Effect": "Allow", "Action": action, "Resource": resource}


def topic(
    template: Template, title: str, display_name: str, encryption_skip: tuple[str, str], name: str | None = None
) -> sns.Topic:
    """An SNS topic; why it is not encrypted with a customer managed key is the caller's ``encryption_skip``.
    ``name`` fixes its TopicName (CloudFormation generates one otherwise)."""
    properties: dict[str, Any] = {"Metadata": checkov_skips(encryption_skip), "DisplayName": display_name}
    if name is not None:
        properties["TopicName"] = name
    return template.add_resource(sns.Topic(title, **properties))


def service_trust(service: str) -> dict[str, Any]:
    """A role trust policy for one service principal, acting for this account only (``aws:SourceAccount``)."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": f"{service}.amazonaws.com"},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"aws:SourceAccount": Ref("AWS::AccountId")}},
            }
        ],
    }


def dead_letter_queue(template: Template, title: str = "DeadLetterQueue") -> sqs.Queue:
    """The queue where every undeliverable event or alert ends up, encrypted with SSE-SQS."""
    return template.add_resource(
        sqs.Queue(
            title,
            Metadata=checkov_skips(SQS_MANAGED_ENCRYPTION),
            SqsManagedSseEnabled=True,
            MessageRetentionPeriod=14 * 24 * 3600,  # the maximum: time to notice and replay
        )
    )


# The notifier reads the buffer through an event source mapping: a batch waits up to the window for more
# sign-ins to coalesce (so the first alert of a quiet account leaves within about half a minute), and at most
# two batches run at once, which paces SES and bounds how many environments keep coalescing state.
# https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-configure.html (batching window, MaximumConcurrency)
# A batch of up to 1,000 (Lambda also stops at 6 MB, some 1,700 sign-ins) lets one email cover a whole minute
# of a storm; the notifier stops sending before its timeout and returns the rest to the queue.
BATCH_SIZE = 1000
BATCHING_WINDOW_SECONDS = 20
MAX_CONCURRENT_BATCHES = 2  # the smallest MaximumConcurrency Lambda accepts
NOTIFIER_TIMEOUT_SECONDS = 60
# AWS asks for a visibility timeout of at least six times the function's timeout, so that a batch retried by
# Lambda is not received twice: https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-configure.html
BUFFER_VISIBILITY_SECONDS = 6 * NOTIFIER_TIMEOUT_SECONDS
# An alert SES keeps refusing (its daily quota spent) is retried every 15 minutes at most: 1,000 receives (the
# largest maxReceiveCount) outlast the 14 days the queue keeps it.
BUFFER_MAX_RECEIVES = 1000
# sqs:ChangeMessageVisibility also authorises ChangeMessageVisibilityBatch, which the notifier uses:
# https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-api-permissions-reference.html
BUFFER_READER_ACTIONS = [
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
    "sqs:ChangeMessageVisibility",
    "sqs:SendMessage",
]


def buffer_queue(template: Template, dead_letters: sqs.Queue, title: str = "BufferQueue") -> sqs.Queue:
    """The queue that holds sign-ins until the notifier has emailed them, then hands the rest on to the dead letters."""
    return template.add_resource(
        sqs.Queue(
            title,
            Metadata=checkov_skips(SQS_MANAGED_ENCRYPTION),
            SqsManagedSseEnabled=True,
            MessageRetentionPeriod=14 * 24 * 3600,
            VisibilityTimeout=BUFFER_VISIBILITY_SECONDS,
            RedrivePolicy=sqs.RedrivePolicy(
                deadLetterTargetArn=GetAtt(dead_letters, "Arn"), maxReceiveCount=BUFFER_MAX_RECEIVES
            ),
        )
    )


def queue_reader(template: Template, queue: sqs.Queue, function: awslambda.Function) -> awslambda.EventSourceMapping:
    """The function reads the queue in batches and reports which messages of a batch must come back."""
    mapping = template.add_resource(
        awslambda.EventSourceMapping(
            "NotifierReadsBuffer",
            EventSourceArn=GetAtt(queue, "Arn"),
            FunctionName=Ref(function),
            BatchSize=BATCH_SIZE,
            MaximumBatchingWindowInSeconds=BATCHING_WINDOW_SECONDS,
            FunctionResponseTypes=["ReportBatchItemFailures"],
        )
    )
    # troposphere types this property as a different resource's ScalingConfig (MaxEnvironments only); set it as
    # CloudFormation documents it for an event source mapping.
    # https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-properties-lambda-eventsourcemapping-scalingconfig.html
    mapping.properties["ScalingConfig"] = {"MaximumConcurrency": MAX_CONCURRENT_BATCHES}
    return mapping


def dead_letter_queue_policy(
    template: Template,
    queue: sqs.Queue,
    senders: Sequence[dict[str, Any]],
    title: str = "DeadLetterQueuePolicy",
) -> sqs.QueuePolicy:
    """The queue's policy: the given senders (``service_statement``s), and no access without TLS."""
    tls_only = {
        "Sid": "TlsOnly",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "sqs:*",
        "Resource": GetAtt(queue, "Arn"),
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }
    return template.add_resource(
        sqs.QueuePolicy(
            title,
            Queues=[Ref(queue)],
            PolicyDocument={"Version": "2012-10-17", "Statement": [*senders, tls_only]},
        )
    )


# The dead-letter alarm speaks each time more alerts wait, not once per episode: an alarm acts only when its
# state changes ("not performed again if the condition persists for hours or days",
# https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/alarm-actions.html), so it watches the rise of
# the queue's waiting messages and goes back to OK once they stop rising. The expression's value is how many
# wait, which the notification carries. DIFF, FILL and IF:
# https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/using-metric-math.html
# FILL(..., REPEAT) keeps a late or missing minute from reading as a rise from zero; the outer FILL makes the
# first message of a queue that had no datapoints (inactive, so SQS publishes none) a rise from zero.
# Evaluating three minutes with one breaching datapoint to alarm covers SQS metrics that arrive a minute or two
# late, where the newest minute is missing; the cost is that arrivals less than three minutes apart share one
# notification. The alarm queries one metric, so it is billed as one alarm metric like a plain alarm.
DEAD_LETTER_ALARM_PERIOD = 60
DEAD_LETTER_ALARM_MINUTES = 3
WAITING_EXPRESSION = "FILL(FILL(visible, REPEAT), 0)"
MORE_WAITING_EXPRESSION = "IF(DIFF(waiting) > 0, waiting, 0)"


def dead_letter_alarm(
    template: Template,
    queue: sqs.Queue,
    alarm_action: Parameter,
    description: str,
    title: str = "DeadLetterAlarm",
) -> cloudwatch.Alarm:
    """An alarm that goes to ALARM each time more messages wait in the queue than a minute before, notifying
    the alarm-action topic when one is given with how many wait."""
    if HAS_ALARM_ACTION not in template.conditions:
        template.add_condition(HAS_ALARM_ACTION, Not(Equals(Ref(alarm_action), "")))
    visible = cloudwatch.MetricDataQuery(
        Id="visible",
        ReturnData=False,
        MetricStat=cloudwatch.MetricStat(
            Metric=cloudwatch.Metric(
                Namespace="AWS/SQS",
                MetricName="ApproximateNumberOfMessagesVisible",
                Dimensions=[cloudwatch.MetricDimension(Name="QueueName", Value=GetAtt(queue, "QueueName"))],
            ),
            Period=DEAD_LETTER_ALARM_PERIOD,
            Stat="Maximum",
        ),
    )
    waiting = cloudwatch.MetricDataQuery(Id="waiting", Expression=WAITING_EXPRESSION, ReturnData=False)
    more_waiting = cloudwatch.MetricDataQuery(
        Id="more_waiting",
        Expression=MORE_WAITING_EXPRESSION,
        Label="Messages waiting, in a minute when more arrived",
        ReturnData=True,
    )
    return template.add_resource(
        cloudwatch.Alarm(
            title,
            AlarmDescription=f"{description} The value is how many wait; each new arrival notifies again.",
            Metrics=[visible, waiting, more_waiting],
            EvaluationPeriods=DEAD_LETTER_ALARM_MINUTES,
            DatapointsToAlarm=1,
            Threshold=0,
            ComparisonOperator="GreaterThanThreshold",
            TreatMissingData="notBreaching",
            AlarmActions=If(HAS_ALARM_ACTION, [Ref(alarm_action)], Ref("AWS::NoValue")),
        )
    )


def signin_rule(
    template: Template,
    title: str,
    description: str,
    pattern: Value,
    target_id: str,
    target_arn: Value,
    dead_letters: sqs.Queue,
    state: Value = ALL_MANAGEMENT_EVENTS,
    role_arn: Value | None = None,
) -> events.Rule:
    """A rule on the default bus with one target that retries for a day and then dead-letters.

    It receives read-only management events too (``ALL_MANAGEMENT_EVENTS``) unless ``state`` says otherwise.
    """
    target: dict[str, Any] = {
        "Id": target_id,
        "Arn": target_arn,
        "DeadLetterConfig": events.DeadLetterConfig(Arn=GetAtt(dead_letters, "Arn")),
        "RetryPolicy": events.RetryPolicy(
            MaximumRetryAttempts=RULE_RETRY_ATTEMPTS, MaximumEventAgeInSeconds=RULE_MAX_EVENT_AGE
        ),
    }
    if role_arn is not None:
        target["RoleArn"] = role_arn
    return template.add_resource(
        events.Rule(
            title, Description=description, State=state, EventPattern=pattern, Targets=[events.Target(**target)]
        )
    )


def notifier(
    template: Template,
    *,
    description: str,
    code: str,
    environment: Mapping[str, Value],
    grants: Sequence[dict[str, Any]],
    dead_letters: sqs.Queue,
    policy_name: str,
    role_path: str | None = None,
) -> awslambda.Function:
    """The Lambda function with its own log group, its role (own logs plus ``grants``, on ``role_path`` when
    given), and its retries.

    Asynchronous invocations are retried twice, then go to the dead-letter queue.
    """
    role_options: dict[str, Any] = {"Path": role_path} if role_path else {}
    log_group = template.add_resource(
        logs.LogGroup(
            "NotifierLogGroup", Metadata=checkov_skips(LOG_GROUP_ENCRYPTION), RetentionInDays=LOG_RETENTION_DAYS
        )
    )
    own_logs = identity_statement(
        "WriteOwnLogs", ["logs:CreateLogStream", "logs:PutLogEvents"], GetAtt(log_group, "Arn")
    )
    role = template.add_resource(
        iam.Role(
            "NotifierRole",
            AssumeRolePolicyDocument=service_trust("lambda"),
            Policies=[
                iam.Policy(
                    PolicyName=policy_name,
                    PolicyDocument={"Version": "2012-10-17", "Statement": [own_logs, *grants]},
                )
            ],
            **role_options,
        )
    )
    function = template.add_resource(
        awslambda.Function(
            "NotifierFunction",
            Metadata=checkov_skips(LAMBDA_ENVIRONMENT_ENCRYPTION, LAMBDA_VPC, LAMBDA_RESERVED_CONCURRENCY),
            Description=description,
            Runtime=LAMBDA_RUNTIME,
            Architectures=["arm64"],
            MemorySize=128,
            Timeout=NOTIFIER_TIMEOUT_SECONDS,
            Handler="index.handler",
            Role=GetAtt(role, "Arn"),
            Code=awslambda.Code(ZipFile=code),
            Environment=awslambda.Environment(Variables=dict(environment)),
            DeadLetterConfig=awslambda.DeadLetterConfig(TargetArn=GetAtt(dead_letters, "Arn")),
            LoggingConfig=awslambda.LoggingConfig(LogGroup=Ref(log_group)),
        )
    )
    template.add_resource(
        awslambda.EventInvokeConfig(
            "NotifierRetries",
            FunctionName=Ref(function),
            Qualifier="$LATEST",
            MaximumRetryAttempts=2,
            MaximumEventAgeInSeconds=6 * 3600,
        )
    )
    return function
