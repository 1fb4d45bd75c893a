"""Every CloudFormation template the tool deploys, and the registry that ``export``, ``export --check`` and the
golden-file tests loop over. One module per template; each is pure and deterministic.

``patterns`` (what each alert policy lets through), ``parameters`` (names and handles) and ``blocks`` (the
parts templates share: dead-letter queue, alarm, sign-in rule, notifier, policy statements) are composed by
one short module per template (``watch``, ``forwarder``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from troposphere import Template

from loginwatch_org.config import Config
from loginwatch_org.templates.blocks import LAMBDA_RUNTIME
from loginwatch_org.templates.forwarder import WATCH_REGION, build_forwarder
from loginwatch_org.templates.mail import build_mail_template
from loginwatch_org.templates.parameters import (
    ALARM_ACTION_PARAMETER,
    ALERT_POLICY_PARAMETER,
    RECIPIENTS_PARAMETER,
    SENDER_PARAMETER,
    SES_IDENTITY_PARAMETER,
    shared_parameters,
)
from loginwatch_org.templates.patterns import FAILURE_EVENTS, SIGNIN_DETAIL_TYPE, WATCHED_EVENTS, event_pattern
from loginwatch_org.templates.rendering import (
    TEMPLATE_BODY_LIMIT,
    TEMPLATE_URL_LIMIT,
    Format,
    render,
    template_body,
    template_digest,
)
from loginwatch_org.templates.watch import build_template, notifier_source

# Where the reviewed exports live, relative to the project root.
TEMPLATES_DIRECTORY = Path("templates")


@dataclass(frozen=True)
class TemplateSpec:
    """One template the tool deploys: its name (also its file's stem under ``templates/``) and its builder."""

    name: str
    description: str
    build: Callable[[Config], Template]

    def path(self, fmt: Format = "yaml", directory: Path = TEMPLATES_DIRECTORY) -> Path:
        return directory / f"{self.name}.{fmt}"


REGISTRY: dict[str, TemplateSpec] = {
    spec.name: spec
    for spec in (
        TemplateSpec("watch", "one account's watch: sign-in rule, topic, notifier, dead-letter queue", build_template),
        TemplateSpec(
            "forwarder",
            f"every region but {WATCH_REGION}: sends the region's sign-ins to the account's watch in {WATCH_REGION}",
            build_forwarder,
        ),
        TemplateSpec("mail", "the mail account: one sender for all, dead-letter alarms to people", build_mail_template),
    )
}

__all__ = [
    "ALARM_ACTION_PARAMETER",
    "ALERT_POLICY_PARAMETER",
    "FAILURE_EVENTS",
    "LAMBDA_RUNTIME",
    "RECIPIENTS_PARAMETER",
    "REGISTRY",
    "SENDER_PARAMETER",
    "SES_IDENTITY_PARAMETER",
    "SIGNIN_DETAIL_TYPE",
    "TEMPLATES_DIRECTORY",
    "TEMPLATE_BODY_LIMIT",
    "TEMPLATE_URL_LIMIT",
    "WATCHED_EVENTS",
    "WATCH_REGION",
    "Format",
    "TemplateSpec",
    "build_forwarder",
    "build_template",
    "event_pattern",
    "notifier_source",
    "render",
    "shared_parameters",
    "template_body",
    "template_digest",
]
