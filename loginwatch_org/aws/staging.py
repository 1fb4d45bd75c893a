"""Staging a template in S3 when its body is too large to send inline.

CreateStackSet, UpdateStackSet, CreateStack and UpdateStack take a ``TemplateBody`` of at most 51,200 bytes, or a
``TemplateURL``: an object of at most 1 MB in an S3 bucket, at an https:// address
(https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_CreateStackSet.html,
https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_CreateStack.html). CloudFormation reads the
object with the caller's credentials when the call is made and keeps its own copy, so the object is needed only
for that moment.

A body within the limit is always sent inline and S3 is never touched. A larger one is put, under its SHA-256, in
one bucket per administrator account and Region, ``loginwatch-org-templates-<account>-<region>``, which this
code creates on first use: every form of public access blocked, requests without TLS denied, objects expiring
after ``OBJECT_LIFETIME_DAYS``. S3 bucket names are global, so another account could take the name first: every
call names the expected owner (``ExpectedBucketOwner``) and a bucket owned by anyone else is refused, never used.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any, Final

from loginwatch_org.aws.errors import error_code
from loginwatch_org.errors import LoginwatchError
from loginwatch_org.templates.rendering import TEMPLATE_BODY_LIMIT, TEMPLATE_URL_LIMIT, template_digest

OBJECT_LIFETIME_DAYS: Final = 30
OWNER_TAG: Final = {"Key": "loginwatch-org", "Value": "template-staging"}

ClientFactory = Callable[[str], Any]


def staging_bucket_name(account: str, region: str) -> str:
    return f"loginwatch-org-templates-{account}-{region}"


class StagingError(LoginwatchError):
    """A template too large to send inline could not be staged."""


class TemplateStager:
    """Turns a template body into the arguments that carry it: inline, or by URL after staging it in S3."""

    def __init__(
        self, s3_for: ClientFactory | None, account: str | None, progress: Callable[[str], None] | None = None
    ) -> None:
        self._s3_for = s3_for
        self._account = account
        self._progress = progress or (lambda _message: None)
        self._ready: set[str] = set()
        self._staged: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def source(self, body: str, region: str) -> dict[str, str]:
        """``{"TemplateBody": body}`` when it fits, else ``{"TemplateURL": url}`` of the staged object."""
        size = len(body.encode("utf-8"))
        if size <= TEMPLATE_BODY_LIMIT:
            return {"TemplateBody": body}
        if size > TEMPLATE_URL_LIMIT:
            raise StagingError(f"the template body is {size:,} bytes: CloudFormation reads at most 1 MB from S3")
        if self._s3_for is None or self._account is None:
            raise StagingError(
                f"the template body is {size:,} bytes, more than the {TEMPLATE_BODY_LIMIT:,} CloudFormation takes "
                "inline, and there is no S3 client (or no caller account) to stage it with"
            )
        with self._lock:
            key = (region, template_digest(body))
            if key not in self._staged:
                self._staged[key] = self._stage(body, region, key[1])
            return {"TemplateURL": self._staged[key]}

    def _stage(self, body: str, region: str, digest: str) -> str:
        assert self._s3_for is not None and self._account is not None
        s3 = self._s3_for(region)
        bucket = staging_bucket_name(self._account, region)
        if bucket not in self._ready:
            self._ensure_bucket(s3, bucket, region)
            self._ready.add(bucket)
        name = f"templates/{digest}.json"
        owner = {"ExpectedBucketOwner": self._account}
        self._progress(f"staging the {len(body):,}-byte template in s3://{bucket}/{name}")
        s3.put_object(Bucket=bucket, Key=name, Body=body.encode("utf-8"), ContentType="application/json", **owner)
        return f"https://{bucket}.s3.{region}.amazonaws.com/{name}"

    def _ensure_bucket(self, s3: Any, bucket: str, region: str) -> None:
        """Create the bucket if it is missing, and (re)apply its settings either way, so that a run interrupted
        between creating it and locking it down is mended by the next."""
        assert self._account is not None
        owner = {"ExpectedBucketOwner": self._account}
        try:
            s3.head_bucket(Bucket=bucket, **owner)
        except Exception as error:
            code = error_code(error)
            if code == "403":
                raise StagingError(
                    f"S3 bucket {bucket} exists but is not this account's ({self._account}), or this caller may not "
                    "read it: templates are never staged in a bucket someone else owns"
                ) from error
            if code not in ("404", "NoSuchBucket", "NotFound"):
                raise
            self._create_bucket(s3, bucket, region)
        s3.put_public_access_block(
            Bucket=bucket,
            PublicAccessBlockConfiguration={
                "BlockPublicAcls": True,
                "IgnorePublicAcls": True,
                "BlockPublicPolicy": True,
                "RestrictPublicBuckets": True,
            },
            **owner,
        )
        s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(_tls_only_policy(bucket)), **owner)
        s3.put_bucket_lifecycle_configuration(
            Bucket=bucket,
            LifecycleConfiguration={
                "Rules": [
                    {
                        "ID": "expire-staged-templates",
                        "Status": "Enabled",
                        "Filter": {"Prefix": "templates/"},
                        "Expiration": {"Days": OBJECT_LIFETIME_DAYS},
                        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
                    }
                ]
            },
            **owner,
        )
        s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [OWNER_TAG]}, **owner)

    def _create_bucket(self, s3: Any, bucket: str, region: str) -> None:
        self._progress(f"creating S3 bucket {bucket} for templates too large to send inline")
        # us-east-1 takes no location constraint; every other Region needs its own.
        # https://docs.aws.amazon.com/AmazonS3/latest/API/API_CreateBucket.html
        location = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        try:
            s3.create_bucket(Bucket=bucket, ObjectOwnership="BucketOwnerEnforced", **location)
        except Exception as error:
            if error_code(error) != "BucketAlreadyOwnedByYou":  # created meanwhile by another run of ours
                raise


def _tls_only_policy(bucket: str) -> dict[str, Any]:
    # https://docs.aws.amazon.com/AmazonS3/latest/userguide/security-best-practices.html (enforce encryption in transit)
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyWithoutTls",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }
