"""A regional forwarder: sends the sign-in events recorded in its region to the account's watch in us-east-1.

EventBridge only sees a CloudTrail event in the region CloudTrail records it in, and sign-ins land in many
regions: root sign-ins in us-east-1, IAM users on the global endpoint in us-east-2, eu-north-1 or
ap-southeast-2 (or us-east-1), regional endpoints in their region, Identity Center in its home region
(https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-event-reference-aws-console-sign-in-events.html).
One watch per account lives in us-east-1; this template goes to every other region and forwards there.

Sign-in event -> EventBridge rule (every event any policy could alert on; the watch filters by policy) ->
the default event bus of us-east-1 in the same account, through a role that may only put events on that bus
(https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-cross-region.html). Like the watch, a failed
delivery is retried for a day, then lands in an encrypted dead-letter queue that an alarm watches.

No parameter differs between accounts, so one stack set operation covers the whole organisation. With a mail
account the dead-letter alarm is also forwarded to the mail account's alarm bus, which emails a person.
"""

from __future__ import annotations

from troposphere import Equals, GetAtt, If, Not, Output, Ref, Sub, Template, iam

from loginwatch_org.config import Config
from loginwatch_org.mail_setup import alarm_bus_arn
from loginwatch_org.templates import blocks, parameters
from loginwatch_org.templates.mail import add_alarm_forwarding
from loginwatch_org.templates.parameters import HAS_ALARM_BUS, REGIONAL_ALARM_ACTION_PARAMETER
from loginwatch_org.templates.patterns import forwarded_pattern

# Where the watch lives: the region every forwarder sends to, and the one region a forwarder must never run in.
WATCH_REGION = "us-east-1"
IN_WATCH_REGION = "InWatchRegion"
WATCH_BUS_ARN = "arn:${AWS::Partition}:events:" + WATCH_REGION + ":${AWS::AccountId}:event-bus/default"


def build_forwarder(config: Config) -> Template:
    """The forwarder: every account and region gets the same template. It reads only whether there is a mail
    account, whose alarm bus then hears of undeliverable events too."""
    template = Template(
        Description=(
            "loginwatch-org: forwards the sign-ins recorded in this region to this account's watch in "
            f"{WATCH_REGION} (EventBridge -> {WATCH_REGION} default bus, failures to a dead-letter queue)."
        )
    )
    template.set_version("2010-09-09")
    # CloudWatch alarm actions must be in the alarm's own region: a topic elsewhere fails the deployment
    # ("Invalid region ... specified"), so the organisation-wide alarm topic of the watch is not the default, and
    # the parameter has a name of its own that the watch's shared alarm topic never fills.
    alarm_action = parameters.add_alarm_action(
        template,
        "",
        "Optional SNS topic ARN in this region, notified when a sign-in event cannot be forwarded.",
        REGIONAL_ALARM_ACTION_PARAMETER,
    )
    bus = alarm_bus_arn(config)
    alarm_bus = parameters.add_alarm_bus(template, bus) if bus is not None else None
    if alarm_bus is not None:
        template.add_condition(HAS_ALARM_BUS, Not(Equals(Ref(alarm_bus), "")))
    # A forwarder in the watch's own region would send the watch's events back to the bus they came from.
    # The stack set never targets that region; should it be deployed there anyway, its rule stays disabled.
    template.add_condition(IN_WATCH_REGION, Equals(Ref("AWS::Region"), WATCH_REGION))

    dead_letters = blocks.dead_letter_queue(template)
    role = template.add_resource(
        iam.Role(
            "ForwarderRole",
            # Only EventBridge, acting for a rule of this account, may assume the role.
            # https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-use-conditions.html
            AssumeRolePolicyDocument=blocks.service_trust("events"),
            Policies=[
                iam.Policy(
                    PolicyName="forward-sign-ins-to-the-watch",
                    PolicyDocument={
                        "Version": "2012-10-17",
                        "Statement": [
                            blocks.identity_statement("PutOnTheWatchBusOnly", "events:PutEvents", Sub(WATCH_BUS_ARN))
                        ],
                    },
                )
            ],
        )
    )
    rule = blocks.signin_rule(
        template,
        "ForwardRule",
        description=f"Sign-ins recorded in this region, sent to the watch in {WATCH_REGION}.",
        # Only events that originated here: an event forwarded into this bus is never sent on.
        pattern=forwarded_pattern(Ref("AWS::Region")),
        target_id="watch-region-bus",
        target_arn=Sub(WATCH_BUS_ARN),
        dead_letters=dead_letters,
        state=If(IN_WATCH_REGION, "DISABLED", blocks.ALL_MANAGEMENT_EVENTS),
        role_arn=GetAtt(role, "Arn"),
    )
    blocks.dead_letter_queue_policy(
        template,
        dead_letters,
        [
            blocks.service_statement(
                "UndeliverableEventsFromTheRule",
                "events",
                "sqs:SendMessage",
                GetAtt(dead_letters, "Arn"),
                GetAtt(rule, "Arn"),
            )
        ],
    )
    alarm = blocks.dead_letter_alarm(
        template,
        dead_letters,
        alarm_action,
        f"A sign-in event could not be forwarded to the watch in {WATCH_REGION}; it waits in the dead-letter queue.",
    )
    if alarm_bus is not None:
        # An event bus in another Region is a valid target, so the mail account's one bus serves every Region.
        # https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-cross-region.html
        add_alarm_forwarding(template, alarm.title, Ref(alarm_bus), HAS_ALARM_BUS)
    template.add_output(Output("DeadLetterQueueUrl", Value=Ref(dead_letters)))
    return template
