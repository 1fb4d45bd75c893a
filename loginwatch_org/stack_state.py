"""What is deployed as plain CloudFormation stacks: the management account's watch and forwarders, which
StackSets cannot reach with service-managed permissions.

Plain data, no AWS calls, like ``state.py``: the reader (``aws/stacks.py``) fills it and the planner
(``stack_plan.py``) only reads it, so a plan can be computed, printed and tested without touching AWS.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from loginwatch_org.state import OWNER_TAG_KEY, OWNER_TAG_VALUE

# Stack status codes, https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/using-cfn-describing-stacks.html
# ("Stack status codes"). A stack in one of these can be updated again.
UPDATABLE_STATUSES = frozenset(
    {"CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE", "IMPORT_COMPLETE", "IMPORT_ROLLBACK_COMPLETE"}
)
# A failed creation leaves ROLLBACK_COMPLETE, of which the same page says "When in this state, only a delete
# operation can be performed"; ROLLBACK_FAILED and DELETE_FAILED say "Delete the stack (again)"; CREATE_FAILED
# (rollback disabled) never held a working stack either. REVIEW_IN_PROGRESS is a stack reserved by a change
# set that nobody executed: it has no template and never leaves that status by itself.
ONLY_DELETABLE_STATUSES = frozenset(
    {"ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "CREATE_FAILED", "DELETE_FAILED", "REVIEW_IN_PROGRESS"}
)
# "When in this state, you can delete the stack or continue rollback": a person must look first, since
# resources failed to return to their previous settings.
CONTINUE_ROLLBACK_STATUS = "UPDATE_ROLLBACK_FAILED"
IN_PROGRESS_SUFFIX = "_IN_PROGRESS"


def is_in_progress(status: str) -> bool:
    """CloudFormation is still working on the stack: wait before changing it (REVIEW_IN_PROGRESS never ends)."""
    return status.endswith(IN_PROGRESS_SUFFIX) and status not in ONLY_DELETABLE_STATUSES


@dataclass(frozen=True)
class DeployedStack:
    name: str
    region: str
    status: str
    # sha256 of the deployed template re-serialised canonically (``aws/reader.py`` canonical_template_digest),
    # comparable with the digest of the body the planner would send.
    template_digest: str
    parameters: Mapping[str, str]
    tags: Mapping[str, str]
    stack_id: str
    status_reason: str | None = None
    # LastUpdatedTime (or CreationTime) as AWS reports it: part of every request token, so that a change
    # after any other change never reuses a token that an earlier, finished request had.
    last_changed: str = ""
    # How many resources of each type the deployed template holds: what the stack costs (``cost.py``).
    resource_types: Mapping[str, int] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        return (self.region, self.name)

    @property
    def owned(self) -> bool:
        return self.tags.get(OWNER_TAG_KEY) == OWNER_TAG_VALUE

    @property
    def in_progress(self) -> bool:
        return is_in_progress(self.status)

    @property
    def only_deletable(self) -> bool:
        return self.status in ONLY_DELETABLE_STATUSES
