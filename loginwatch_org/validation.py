"""What ``validate`` says about a valid accounts file: a summary, the sending setup, and what to look out for.

Pure, and free of typer and troposphere: ``validate`` runs on every edit of the config (and in editors' and
CI's hooks), so it must start faster than importing boto3.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loginwatch_org.config import Config
from loginwatch_org.mail_setup import sending_setup

# Where CloudTrail records a console sign-in of an IAM user through the global endpoint when the browser holds
# an account-alias cookie, besides us-east-1
# (https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-event-reference-aws-console-sign-in-events.html).
ALIAS_COOKIE_REGIONS = ("us-east-2", "eu-north-1", "ap-southeast-2")


@dataclass(frozen=True)
class Validation:
    """A valid config, described for a person (``lines``) and for a script (``document``, printed by --json)."""

    path: Path
    config: Config

    @property
    def notes(self) -> list[str]:
        notes: list[str] = []
        delivery = self.config.delivery
        if delivery.mail_account is None and delivery.alarm_topic_arn is None:
            notes.append(
                "undeliverable alerts reach nobody: they wait in each account's dead-letter queue unless "
                "delivery.alarm_topic_arn names a topic that pages someone, or delivery.mail_account is set (its "
                "alarm topic emails delivery.alarm_recipients)."
            )
        covered = {*self.config.forward_regions(), *self.config.stack_set.regions}
        left_out = [region for region in ALIAS_COOKIE_REGIONS if region not in covered]
        if left_out:
            notes.append(
                f"stack_set.forward_from leaves out {', '.join(left_out)}: an IAM user who signs in through the "
                "global endpoint with an account-alias cookie in the browser is recorded in one of "
                f"{', '.join(ALIAS_COOKIE_REGIONS)}, so such sign-ins in {', '.join(left_out)} would go unseen. "
                "Add them, or use forward_from: all."
            )
        return notes

    def document(self) -> dict[str, Any]:
        config = self.config
        targets = config.targets()
        return {
            "file": str(self.path),
            "valid": True,
            "accounts_watched": len(targets),
            "accounts_disabled": len(config.disabled_account_ids()),
            "recipient_policy_groups": len({(t.recipients, t.alert_on) for t in targets}),
            "stack_set": config.stack_set.name,
            "permission_model": config.stack_set.permission_model,
            "regions": list(config.stack_set.regions),
            "forward_from": list(config.forward_regions()),
            "notes": self.notes,
            "sending_setup": sending_setup(config),
        }

    def lines(self) -> list[str]:
        summary = self.document()
        disabled = summary["accounts_disabled"]
        forwarded = summary["forward_from"]
        return [
            f"{self.path}: valid. {summary['accounts_watched']} account(s) watched"
            + (f", {disabled} disabled" if disabled else "")
            + f", {summary['recipient_policy_groups']} distinct recipient/policy group(s); stack set "
            f"'{summary['stack_set']}' ({summary['permission_model']}) in {', '.join(summary['regions'])}, with "
            f"sign-ins forwarded from {len(forwarded)} other region(s) ({', '.join(forwarded)}).",
            f"Sending: {summary['sending_setup']}",
            *(f"Note: {text}" for text in summary["notes"]),
        ]
