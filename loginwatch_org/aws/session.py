"""boto3 sessions and clients the way boto3 users expect: the standard credential chain, ``--profile``,
``--region`` for the administrator region, and ``AWS_ENDPOINT_URL``/``--endpoint-url`` for local emulators.

An endpoint that cannot be reached fails in seconds, not minutes: botocore's defaults (a 60 s connect
timeout, and the same retry budget for a refused connection as for throttling) made a typo in
``--endpoint-url`` look like a hang. Connection failures get a short connect timeout and a small budget of
their own, announced on the progress callback; throttling keeps adaptive retries with the full budget.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loginwatch_org import __version__

DEFAULT_ADMIN_REGION = "us-east-1"
# Seconds to establish a TCP/TLS connection (botocore's default is 60), and attempts (the first included)
# at a call whose connection fails: two at most 3 s each plus one backoff of at most 1 s.
# https://docs.aws.amazon.com/boto3/latest/guide/retries.html (total_max_attempts, retry modes)
CONNECT_TIMEOUT = 3
CONNECT_ATTEMPTS = 2
# Attempts at a throttled call: adaptive mode also slows the client down to the rate AWS accepts.
THROTTLE_ATTEMPTS = 10

Progress = Callable[[str], None]


@dataclass(frozen=True)
class AwsTarget:
    profile: str | None = None
    region: str | None = None
    endpoint_url: str | None = None
    # Explicit keys bypass the credential chain; only the sandbox uses them (its keys are fake).
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None


def client(target: AwsTarget, service: str, progress: Progress | None = None, session: Any = None) -> Any:
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
        retries={"mode": "adaptive", "total_max_attempts": THROTTLE_ATTEMPTS},
        connect_timeout=CONNECT_TIMEOUT,
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
    made = session.client(service, **kwargs)
    if progress is not None:
        progress(f"using {service} at {made.meta.endpoint_url} (region {region})")
    _limit_connection_retries(made, progress)
    return made


def _limit_connection_retries(made: Any, progress: Progress | None) -> None:
    """Stop retrying a call whose connection fails after ``CONNECT_ATTEMPTS``, saying so on ``progress``.

    A ``needs-retry`` handler that returns False vetoes the retry; registered first, it is asked before the
    adaptive handler, which still decides (and backs off) for every other failure.
    https://docs.aws.amazon.com/botocore/latest/topics/events.html
    """
    from botocore.exceptions import ConnectionError as BotoConnectionError

    endpoint = made.meta.endpoint_url

    def needs_retry(attempts: int, caught_exception: BaseException | None = None, **_: Any) -> bool | None:
        if not isinstance(caught_exception, BotoConnectionError):
            return None
        if attempts >= CONNECT_ATTEMPTS:
            return False
        if progress is not None:
            progress(f"cannot connect to {endpoint}; trying again (attempt {attempts + 1} of {CONNECT_ATTEMPTS})")
        return None

    service_id = made.meta.service_model.service_id.hyphenize()
    made.meta.events.register_first(f"needs-retry.{service_id}", needs_retry, unique_id=f"lw-connect-{service_id}")
