"""The AWS behaviour the sandbox adds on top of moto, one module per AWS service.

moto emulates the AWS APIs, but a few things this product relies on either are not implemented or
act differently from AWS.  Every such difference is corrected in this package, and only here, as a
small patch that names the AWS behaviour it adds and where AWS documents it:

* ``stacksets``: operation ids, targets, overrides, stack set updates, RetainStacks, trusted access.
* ``stackset_drift``: DetectStackSetDrift, per-instance drift status, the stack set's drift details.
* ``cfn_resources``: the CloudFormation resource types moto skips.
* ``cfn_updates``: stack updates (parameters used through Fn::Sub or conditions, inline Lambda code,
  SNS topics updated in place).
* ``eventbridge``: SNS topics as rule targets, disabled rules.
* ``sns``: the notification record a Lambda subscriber receives.
* ``sns_access``: a publish from another account needs the topic policy's grant.
* ``lambda_runner``: running a function's deployed code without docker.
* ``lambda_configuration``: GetFunctionConfiguration names the function's log group.
* ``ses``: keeping both the text and the HTML part of a message.

``apply()`` installs every module's patches (calling it again only updates the endpoint the
functions call back into) and ``revert()`` puts moto back as it was.  Nothing else in the sandbox
changes moto.
"""

from loginwatch_org.sandbox.behaviour._core import apply, is_applied, revert

__all__ = ["apply", "is_applied", "revert"]
