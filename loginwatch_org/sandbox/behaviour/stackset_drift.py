"""StackSets drift detection (moto has no DetectStackSetDrift: the call answered with an HTML 500 page).

DetectStackSetDrift runs an operation (action ``DETECT_DRIFT``) over every instance of the stack set.
Each instance gets a ``DriftStatus`` (DRIFTED or IN_SYNC; NOT_CHECKED before any detection) and the
time of the check; DescribeStackSet and DescribeStackSetOperation carry the counts of the last
detection in ``StackSetDriftDetectionDetails``.

What counts as drift: the sandbox compares each deployed Lambda function (the resource whose
configuration carries the recipients, sender and alert policy) with the properties its template
gives it, as CloudFormation compares a resource's actual with its expected configuration; a function
deleted out of band is drift too.  Other resource types are not checked, which AWS also reports for
resource types that do not support drift detection.
https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_DetectStackSetDrift.html
https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_StackSetDriftDetectionDetails.html
https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_StackInstanceSummary.html
https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/stacksets-drift.html
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from moto.awslambda.utils import get_backend as get_lambda_backend
from moto.cloudformation import parsing as cfn_parsing
from moto.cloudformation.models import StackInstance, StackSet
from moto.cloudformation.responses import CloudFormationResponse
from moto.core.responses import ActionResult

from loginwatch_org.sandbox.behaviour._core import Patches
from loginwatch_org.sandbox.behaviour.stacksets import with_operation_id

PATCHES: Final = Patches()

# Function properties a template sets and drift detection compares, with moto's attribute for each.
_FUNCTION_PROPERTIES: Final = {
    "Handler": "handler",
    "Runtime": "run_time",
    "Timeout": "timeout",
    "MemorySize": "memory_size",
}
_NOT_CHECKED: Final = "NOT_CHECKED"


def instance_drift(instance: StackInstance) -> str:
    """DRIFTED when a function of the instance's stack differs from its template, else IN_SYNC."""
    stack = instance.stack
    resources = stack.resource_map
    for logical_id, resource in resources._resource_json_map.items():
        if not isinstance(resource, dict) or resource.get("Type") != "AWS::Lambda::Function":
            continue
        deployed = resources._parsed_resources.get(logical_id)
        if deployed is None:
            continue
        expected = cfn_parsing.clean_json(resource.get("Properties") or {}, resources)
        try:
            live = get_lambda_backend(instance.account_id, instance.region_name).get_function(deployed.function_name)
        except Exception:
            return "DRIFTED"  # deleted out of band
        if _function_differs(expected, live):
            return "DRIFTED"
    return "IN_SYNC"


def _function_differs(expected: Mapping[str, Any], live: Any) -> bool:
    variables = (expected.get("Environment") or {}).get("Variables") or {}
    deployed = live.environment_vars or {}
    if {str(k): str(v) for k, v in variables.items()} != {str(k): str(v) for k, v in deployed.items()}:
        return True
    for name, attribute in _FUNCTION_PROPERTIES.items():
        if name in expected and str(expected[name]) != str(getattr(live, attribute)):
            return True
    return False


def _not_checked() -> dict[str, Any]:
    return {
        "DriftStatus": _NOT_CHECKED,
        "TotalStackInstancesCount": 0,
        "DriftedStackInstancesCount": 0,
        "InSyncStackInstancesCount": 0,
        "InProgressStackInstancesCount": 0,
        "FailedStackInstancesCount": 0,
    }


@PATCHES.replace(CloudFormationResponse, "detect_stack_set_drift", with_operation_id)
def _detect_stack_set_drift(self: CloudFormationResponse) -> ActionResult:
    """DetectStackSetDrift checks every instance and records the outcome as an operation."""
    stack_set = self.cloudformation_backend.describe_stack_set(self._get_param("StackSetName"))
    checked = datetime.now(UTC)
    drifted = 0
    for instance in stack_set.stack_instances:
        status = instance_drift(instance)
        drifted += status == "DRIFTED"
        instance._sandbox_drift = (status, checked)  # type: ignore[attr-defined]
    total = len(stack_set.stack_instances)
    details = {
        "DriftStatus": "DRIFTED" if drifted else "IN_SYNC",
        "DriftDetectionStatus": "COMPLETED",
        "LastDriftCheckTimestamp": checked,
        "TotalStackInstancesCount": total,
        "DriftedStackInstancesCount": drifted,
        "InSyncStackInstancesCount": total - drifted,
        "InProgressStackInstancesCount": 0,
        "FailedStackInstancesCount": 0,
    }
    operation = stack_set._create_operation(
        operation_id=self._get_param("OperationId") or str(uuid.uuid4()),
        action="DETECT_DRIFT",
        status="SUCCEEDED",
        accounts=sorted({i.account_id for i in stack_set.stack_instances}),
        regions=sorted({i.region_name for i in stack_set.stack_instances}),
    )
    operation["_sandbox_drift_details"] = details
    stack_set._sandbox_drift_details = details  # type: ignore[attr-defined]
    return ActionResult({"OperationId": operation["OperationId"]})


@PATCHES.replace(StackSet, "stack_set_drift_detection_details", property)
def _stack_set_drift_details(self: StackSet) -> dict[str, Any]:
    """DescribeStackSet reports the last completed drift detection (NOT_CHECKED before any)."""
    return dict(getattr(self, "_sandbox_drift_details", None) or _not_checked())


@PATCHES.wrap(CloudFormationResponse, "describe_stack_set_operation")
def _make_describe_operation(original: Any) -> Any:
    """A drift detection operation carries its ``StackSetDriftDetectionDetails``."""

    @functools.wraps(original)
    def describe_stack_set_operation(self: CloudFormationResponse) -> ActionResult:
        result: ActionResult = original(self)
        stack_set = self.cloudformation_backend.describe_stack_set(self._get_param("StackSetName"))
        operation = stack_set.get_operation(self._get_param("OperationId"))
        details = operation.get("_sandbox_drift_details")
        if details is not None and isinstance(result.result, dict):
            result.result["StackSetOperation"].stack_set_drift_detection_details = details
        return result

    return describe_stack_set_operation


@PATCHES.wrap(StackInstance, "to_dict")
def _make_instance_to_dict(original: Any) -> Any:
    """Each instance reports its drift status and when it was last checked."""

    @functools.wraps(original)
    def to_dict(self: StackInstance) -> dict[str, Any]:
        described: dict[str, Any] = original(self)
        drift = getattr(self, "_sandbox_drift", None)
        described["DriftStatus"] = drift[0] if drift else _NOT_CHECKED
        if drift:
            described["LastDriftCheckTimestamp"] = drift[1]
        return described

    return to_dict
