"""boto3 sessions and clients the way boto3 users expect: the standard credential chain, ``--profile``,
``--region`` for the administrator region, and ``AWS_ENDPOINT_URL``/``--endpoint-url`` for local emulators."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from loginwatch_org import __version__


@dataclass(frozen=True)
class AwsTarget:
    profile: str | None = None
    region: str | None = None
    endpoint_url: str | None = None
    # Explicit keys bypass the credential chain; only the sandbox uses them (its keys are fake).
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None


DEFAULT_ADMIN_REGION = "us-east-1"


def client(target: AwsTarget, service: str, session: Any = None) -> Any:
    """A client for ``target``; pass one boto3 ``session`` to build many clients (it caches service models),
    and ``target``'s explicit keys, if any, are given to the client instead."""
    import boto3  # lazily: --help, validate and export must start without it
    from botocore.config import Config as BotoConfig

    shared = session is not None
    if not shared and target.access_key_id:
        session = boto3.Session(
            aws_access_key_id=target.access_key_id,
            aws_secret_access_key=target.secret_access_key,
            aws_session_token=target.session_token,
            region_name=target.region,
        )
    elif not shared:
        session = boto3.Session(profile_name=target.profile, region_name=target.region)
    region = target.region or session.region_name or DEFAULT_ADMIN_REGION
    config = BotoConfig(
        # Adaptive mode retries throttling with client-side rate limiting: a 1,000-account plan reads in
        # bursts, and CloudFormation throttles StackSet reads per account.
        retries={"mode": "adaptive", "max_attempts": 10},
        user_agent_extra=f"loginwatch-org/{__version__}",
        max_pool_connections=16,
    )
    kwargs: dict[str, Any] = {"region_name": region, "config": config}
    if target.endpoint_url:
        kwargs["endpoint_url"] = target.endpoint_url
    if shared and target.access_key_id:
        kwargs.update(
            aws_access_key_id=target.access_key_id,
            aws_secret_access_key=target.secret_access_key,
            aws_session_token=target.session_token,
        )
    return session.client(service, **kwargs)
