"""Fake S3: the calls template staging makes, and the objects CloudFormation reads by ``TemplateURL``.

Buckets belong to one account; a call naming another ``ExpectedBucketOwner`` is refused with 403, as S3 refuses
it (https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucket-owner-condition.html).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from botocore.exceptions import ClientError


def _error(code: str, operation: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, operation)


@dataclass
class StoredBucket:
    owner: str
    region: str
    settings: dict[str, Any] = field(default_factory=dict)
    objects: dict[str, bytes] = field(default_factory=dict)


class FakeS3:
    def __init__(self, account: str) -> None:
        self.account = account
        self.buckets: dict[str, StoredBucket] = {}
        self.puts = 0

    def client(self, region: str) -> FakeS3Client:
        return FakeS3Client(self, region)

    def read_url(self, url: str) -> str | None:
        """What CloudFormation reads from a virtual-hosted ``https://bucket.s3.region.amazonaws.com/key``."""
        parsed = urlparse(url)
        bucket = self.buckets.get(parsed.netloc.split(".")[0])
        if parsed.scheme != "https" or bucket is None:
            return None
        body = bucket.objects.get(parsed.path.lstrip("/"))
        return None if body is None else body.decode("utf-8")


class FakeS3Client:
    def __init__(self, s3: FakeS3, region: str) -> None:
        self._s3 = s3
        self._region = region

    def _bucket(self, name: str, expected_owner: str | None, operation: str) -> StoredBucket:
        bucket = self._s3.buckets.get(name)
        if bucket is None:
            raise _error("404" if operation == "HeadBucket" else "NoSuchBucket", operation)
        if expected_owner is not None and bucket.owner != expected_owner:
            raise _error("403" if operation == "HeadBucket" else "AccessDenied", operation)
        return bucket

    def head_bucket(self, Bucket: str, ExpectedBucketOwner: str | None = None) -> dict[str, Any]:
        self._bucket(Bucket, ExpectedBucketOwner, "HeadBucket")
        return {}

    def create_bucket(self, Bucket: str, **kwargs: Any) -> dict[str, Any]:
        if Bucket in self._s3.buckets:
            code = (
                "BucketAlreadyOwnedByYou"
                if self._s3.buckets[Bucket].owner == self._s3.account
                else "BucketAlreadyExists"
            )
            raise _error(code, "CreateBucket")
        location = kwargs.get("CreateBucketConfiguration", {}).get("LocationConstraint")
        if (location or "us-east-1") != self._region:
            raise _error("IllegalLocationConstraintException", "CreateBucket")
        self._s3.buckets[Bucket] = StoredBucket(self._s3.account, self._region)
        return {"Location": f"/{Bucket}"}

    def _set(self, name: str, key: str, value: Any, owner: str | None, operation: str) -> dict[str, Any]:
        self._bucket(name, owner, operation).settings[key] = value
        return {}

    def put_public_access_block(
        self, Bucket: str, PublicAccessBlockConfiguration: Any, ExpectedBucketOwner: str | None = None
    ) -> dict[str, Any]:
        return self._set(
            Bucket, "public_access_block", PublicAccessBlockConfiguration, ExpectedBucketOwner, "PutPublicAccessBlock"
        )

    def put_bucket_policy(self, Bucket: str, Policy: str, ExpectedBucketOwner: str | None = None) -> dict[str, Any]:
        return self._set(Bucket, "policy", Policy, ExpectedBucketOwner, "PutBucketPolicy")

    def put_bucket_lifecycle_configuration(
        self, Bucket: str, LifecycleConfiguration: Any, ExpectedBucketOwner: str | None = None
    ) -> dict[str, Any]:
        return self._set(
            Bucket, "lifecycle", LifecycleConfiguration, ExpectedBucketOwner, "PutBucketLifecycleConfiguration"
        )

    def put_bucket_tagging(self, Bucket: str, Tagging: Any, ExpectedBucketOwner: str | None = None) -> dict[str, Any]:
        return self._set(Bucket, "tagging", Tagging, ExpectedBucketOwner, "PutBucketTagging")

    def put_object(
        self, Bucket: str, Key: str, Body: bytes, ExpectedBucketOwner: str | None = None, **_: Any
    ) -> dict[str, Any]:
        self._bucket(Bucket, ExpectedBucketOwner, "PutObject").objects[Key] = Body
        self._s3.puts += 1
        return {"ETag": '"etag"'}


class BotoS3Reader:
    """``read_url`` over a boto3 S3 client (moto's in-process S3), for a double whose templates are staged there."""

    def __init__(self, s3: Any) -> None:
        self._s3 = s3

    def read_url(self, url: str) -> str | None:
        parsed = urlparse(url)
        if parsed.scheme != "https":
            return None
        try:
            got = self._s3.get_object(Bucket=parsed.netloc.split(".")[0], Key=parsed.path.lstrip("/"))
        except ClientError:
            return None
        return str(got["Body"].read().decode("utf-8"))
