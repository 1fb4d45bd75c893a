"""Template text: the reviewable export, the compact body StackSets receive, and its digest."""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from troposphere import Template

# CreateStackSet/UpdateStackSet reject a TemplateBody over 51,200 bytes; a TemplateURL may name an S3 object of up
# to 1 MB (https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_CreateStackSet.html).
TEMPLATE_BODY_LIMIT = 51_200
TEMPLATE_URL_LIMIT = 1_048_576

Format = Literal["yaml", "json"]


def render(template: Template, fmt: Format = "yaml") -> str:
    """The reviewable text form: what ``export`` writes and ``templates/`` holds."""
    if fmt == "json":
        return str(template.to_json(indent=2, sort_keys=False)) + "\n"
    return str(template.to_yaml(clean_up=True, long_form=False))


def template_body(template: Template) -> str:
    """The compact form sent to StackSets: smallest bytes, and stable for digests."""
    return json.dumps(template.to_dict(), separators=(",", ":"), sort_keys=True)


def template_digest(body: str) -> str:
    return hashlib.sha256(body.encode("utf-8")).hexdigest()
