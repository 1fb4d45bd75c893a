"""boto3 sessions and clients the way boto3 users expect: the standard credential chain, ``--profile``,
``--region`` for the administrator region, and ``AWS_ENDPOINT_URL``/``--endpoint-url`` for local emulators.

An endpoint that cannot be reached, or that takes the connection and never answers, fails in seconds, not
minutes: botocore's defaults (60 s to connect, 60 s to read, and the same retry budget for a dead connection as
for throttling) made a typo in ``--endpoint-url`` look like a hang, and a server that stopped answering kept
``plan`` silent for ten minutes. Connection failures and read timeouts get short timeouts and a small budget of
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
# Seconds to wait for an answer once connected (botocore's default is 60), also for two attempts at most: a
# server that never answers fails the command in 2 x 12 s plus one backoff, under half a minute. Every call this
# tool makes to AWS is a control-plane request answered in well under a second; none long-polls (the one
# ReceiveMessage asks for WaitTimeSeconds=0).
# https://docs.aws.amazon.com/botocore/latest/reference/config.html (read_timeout)
READ_TIMEOUT = 12
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
    # The sandbox runs whole deployments inside one call (moto deploys a stack instance before it answers), so
    # it waits longer; AWS answers at once and runs the work behind an operation id.
    read_timeout: int = READ_TIMEOUT


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
        read_timeout=target.read_timeout,
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
    """Stop retrying a call whose connection fails, or that gets no answer within the read timeout, after
    ``CONNECT_ATTEMPTS``, saying so on ``progress``.

    A ``needs-retry`` handler that returns False vetoes the retry; registered first, it is asked before the
    adaptive handler, which still decides (and backs off) for every other failure.
    https://docs.aws.amazon.com/botocore/latest/topics/events.html
    """
    from botocore.exceptions import ConnectionError as BotoConnectionError
    from botocore.exceptions import ReadTimeoutError

    endpoint = made.meta.endpoint_url

    def needs_retry(attempts: int, caught_exception: BaseException | None = None, **_: Any) -> bool | None:
        if isinstance(caught_exception, ReadTimeoutError):
            problem = f"no answer from {endpoint} within {made.meta.config.read_timeout} s"
        elif isinstance(caught_exception, BotoConnectionError):
            problem = f"cannot connect to {endpoint}"
        else:
            return None
        if attempts >= CONNECT_ATTEMPTS:
            return False
        if progress is not None:
            progress(f"{problem}; trying again (attempt {attempts + 1} of {CONNECT_ATTEMPTS})")
        return None

    service_id = made.meta.service_model.service_id.hyphenize()
    made.meta.events.register_first(f"needs-retry.{service_id}", needs_retry, unique_id=f"lw-connect-{service_id}")
