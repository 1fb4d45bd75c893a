"""The AWS behaviour the sandbox adds on top of moto, one module per AWS service.

moto emulates the AWS APIs, but a few things this product relies on either are not implemented or
act differently from AWS.  Every such difference is corrected in this package, and only here, as a
small patch that names the AWS behaviour it adds and where AWS documents it:

* ``stacksets``: operation ids, targets, overrides, stack set updates, RetainStacks, trusted access.
* ``stackset_drift``: DetectStackSetDrift, per-instance drift status, the stack set's drift details.
* ``cfn_resources``: the CloudFormation resource types moto skips (event bus policies among them).
* ``cfn_updates``: stack updates (parameters used through Fn::Sub or conditions, inline Lambda code,
  SNS topics updated in place).
* ``eventbridge``: SNS topics and SQS queues as rule targets (the whole event), event buses in other
  Regions as targets (the original event, the target's role and the bus's policy checked, one hop),
  disabled rules.
* ``sns``: the notification record a Lambda subscriber receives; email subscriptions confirmed with their
  token, and what they receive recorded in the mailbox.
* ``cloudwatch``: alarms on a queue's visible messages (single metric or metric math, ``_metric_math``)
  evaluated period by period, their state changes sent to EventBridge and to their SNS actions.
* ``sns_access``: a publish from another account needs the topic policy's grant.
* ``lambda_runner``: running a function's deployed code without docker.
* ``lambda_configuration``: GetFunctionConfiguration names the function's log group and dead-letter queue.
* ``lambda_async``: a failed asynchronous invocation retried, then sent to the function's dead-letter queue.
* ``sqs_event_source``: a queue read by a function in batches, as Lambda polls it, honouring partial batch responses.
* ``cfn_limits``: a template body over 51,200 bytes refused (a larger one must come from S3).
* ``s3``: bucket policies with their conditions; sandbox requests count as made over TLS.
* ``ses``: keeping both the text and the HTML part of a message.
* ``prerequisites``: what ``doctor`` checks (SES account status, Regions, trails, roles that must exist).
* ``mail_account``: AssumeRole honouring the role's trust policy, so only the organisation's watches send
  through the mail account.

``_policies`` evaluates the IAM policies the last three need.

``apply()`` installs every module's patches (calling it again only updates the endpoint the
functions call back into) and ``revert()`` puts moto back as it was.  Nothing else in the sandbox
changes moto.
"""

from loginwatch_org.sandbox.behaviour._core import apply, is_applied, revert

__all__ = ["apply", "is_applied", "revert"]
