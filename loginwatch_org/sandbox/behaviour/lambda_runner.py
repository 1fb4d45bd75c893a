"""Lambda: invoking a function runs its deployed code, without docker.

moto runs functions only in docker.  The sandbox runs the function's own zip in a Python subprocess,
with its handler, environment, execution role's credentials and log group, calling back into the
sandbox for every AWS call.
"""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Final

from moto.awslambda.models import LambdaFunction
from moto.sts.models import sts_backends
from moto.utilities.utils import get_partition

from loginwatch_org.sandbox.behaviour._core import Patches, endpoint_url

logger = logging.getLogger(__name__)

PATCHES: Final = Patches()

# A function gets this long on top of its configured timeout: starting a Python interpreter and
# importing boto3 takes time AWS does not charge to the function either (its runtime is warm).
_COLD_START_ALLOWANCE_SECONDS: Final = 10.0
# Lambda returns the last 4 KB of the log when a caller asks for the log tail.
_LOG_TAIL_BYTES: Final = 4096

# Credentials minted for a function's execution role, reused for every invocation of it.
_role_credentials: dict[tuple[str, str], tuple[str, str, str]] = {}


@PATCHES.on_revert
def _forget_credentials() -> None:
    _role_credentials.clear()


# Runs inside the function's own process: import the handler from the extracted code, call it with
# the event from stdin and a Lambda-like context, write the result (or error) to a file.
_RUNNER: Final = r"""
import importlib, json, os, sys, time, traceback
task_root, result_path, handler, deadline = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
sys.path.insert(0, task_root)
os.chdir(task_root)

class Context:
    function_name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
    function_version = os.environ["AWS_LAMBDA_FUNCTION_VERSION"]
    invoked_function_arn = os.environ["SANDBOX_FUNCTION_ARN"]
    memory_limit_in_mb = int(os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"])
    aws_request_id = os.environ["SANDBOX_REQUEST_ID"]
    log_group_name = os.environ["AWS_LAMBDA_LOG_GROUP_NAME"]
    log_stream_name = os.environ["AWS_LAMBDA_LOG_STREAM_NAME"]
    identity = None
    client_context = None

    @staticmethod
    def get_remaining_time_in_millis():
        return max(0, int((deadline - time.time()) * 1000))

ok = False
try:
    event = json.load(sys.stdin)
    module_name, _, function_name = handler.rpartition(".")
    function = getattr(importlib.import_module(module_name.replace("/", ".")), function_name)
    payload = json.dumps(function(event, Context()))
    ok = True
except Exception as error:
    # Report the function's own frames only, not this runner's.
    frames = error.__traceback__.tb_next if error.__traceback__ else None
    traceback.print_exception(type(error), error, frames)
    payload = json.dumps({
        "errorMessage": str(error),
        "errorType": type(error).__name__,
        "stackTrace": traceback.format_tb(frames),
    })
sys.stdout.flush()
sys.stderr.flush()
with open(result_path, "w", encoding="utf-8") as result:
    result.write(payload)
sys.exit(0 if ok else 1)
"""


def _execution_role_credentials(function: LambdaFunction) -> tuple[str, str, str]:
    """Temporary credentials of the function's execution role, in the role's account.

    moto picks the account of a request from its access key; a key minted by assuming a role
    belongs to the account in the role's ARN.
    """
    key = (function.account_id, function.role)
    if key not in _role_credentials:
        sts = sts_backends[function.account_id][get_partition(function.region)]
        assumed = sts.assume_role(
            region_name=function.region,
            role_session_name=function.function_name[:64],
            role_arn=function.role,
            policy="",
            duration=43200,
            external_id="",
        )
        _role_credentials[key] = (assumed.access_key_id, assumed.secret_access_key, assumed.session_token)
    return _role_credentials[key]


def _write_logs(function: LambdaFunction, stream: str, lines: Iterable[str]) -> None:
    backend = function.logs_backend
    backend.ensure_log_group(function.logs_group_name)
    backend.create_log_stream(function.logs_group_name, stream)
    now = int(time.time() * 1000)
    events = [{"timestamp": now, "message": line} for line in lines]
    if events:
        backend.put_log_events(function.logs_group_name, stream, events)


@PATCHES.replace(LambdaFunction, "_invoke_lambda")
def _invoke_lambda(self: LambdaFunction, event: Any = None) -> tuple[str, bool, str]:
    """Invoking a function runs its deployed code: the zip in the Lambda backend, its handler,
    its environment variables and its execution role, with AWS calls going back to the sandbox.

    moto runs functions only in docker.  Here the code runs in a Python subprocess (the sandbox's
    interpreter, whatever Python runtime the function names) with the reserved variables Lambda
    sets, and its output goes to the function's CloudWatch log group as in AWS.
    https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html#configuration-envvars-runtime
    https://docs.aws.amazon.com/lambda/latest/dg/python-handler.html
    """
    request_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    stream = f"{now:%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}"
    runtime = str(self.run_time or "")
    if not runtime.startswith("python"):
        message = f"The sandbox runs Python functions only; {self.function_name} uses {runtime or 'an image'}"
        _write_logs(self, stream, [message])
        return json.dumps({"errorMessage": message, "errorType": "Runtime.Unsupported"}), True, message
    sandbox_url = endpoint_url()
    if sandbox_url is None:
        raise RuntimeError("The sandbox endpoint is not known yet: call apply(endpoint_url=...) first")

    access_key, secret_key, session_token = _execution_role_credentials(self)
    timeout = float(self.timeout or 3)
    started = time.time()
    deadline = started + timeout
    with tempfile.TemporaryDirectory(prefix="lambda-") as scratch:
        task_root = os.path.join(scratch, "task")
        with zipfile.ZipFile(io.BytesIO(self.code_bytes)) as archive:
            archive.extractall(task_root)
        result_path = os.path.join(scratch, "result.json")
        # Reserved variables win over the function's own, as in Lambda; the shared AWS config and
        # credential files are hidden so the code can only ever use its role's sandbox credentials.
        environment = {str(k): str(v) for k, v in (self.environment_vars or {}).items()}
        environment.update(
            {
                "PATH": os.environ.get("PATH", os.defpath),
                "HOME": scratch,
                "LANG": "en_US.UTF-8",
                "TZ": "UTC",
                "PYTHONUNBUFFERED": "1",
                "PYTHONDONTWRITEBYTECODE": "1",
                "_HANDLER": str(self.handler),
                "LAMBDA_TASK_ROOT": task_root,
                "AWS_EXECUTION_ENV": f"AWS_Lambda_{runtime}",
                "AWS_LAMBDA_FUNCTION_NAME": self.function_name,
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(self.memory_size),
                "AWS_LAMBDA_LOG_GROUP_NAME": self.logs_group_name,
                "AWS_LAMBDA_LOG_STREAM_NAME": stream,
                "AWS_REGION": self.region,
                "AWS_DEFAULT_REGION": self.region,
                "AWS_ACCESS_KEY_ID": access_key,
                "AWS_SECRET_ACCESS_KEY": secret_key,
                "AWS_SESSION_TOKEN": session_token,
                "AWS_ENDPOINT_URL": sandbox_url,
                "AWS_CONFIG_FILE": os.devnull,
                "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
                "AWS_EC2_METADATA_DISABLED": "true",
                "SANDBOX_FUNCTION_ARN": self.function_arn,
                "SANDBOX_REQUEST_ID": request_id,
            }
        )
        try:
            completed = subprocess.run(
                [sys.executable, "-c", _RUNNER, task_root, result_path, str(self.handler), str(deadline)],
                input=json.dumps(event if event is not None else {}),
                capture_output=True,
                text=True,
                env=environment,
                timeout=timeout + _COLD_START_ALLOWANCE_SECONDS,
                check=False,
            )
            output = completed.stdout + completed.stderr
            errored = completed.returncode != 0
            try:
                with open(result_path, encoding="utf-8") as handle:
                    payload = handle.read()
            except FileNotFoundError:
                payload = json.dumps({"errorMessage": "The function process exited without a result"})
                errored = True
        except subprocess.TimeoutExpired as expired:
            output = _text(expired.stdout) + _text(expired.stderr)
            output += f"\nTask timed out after {timeout:.2f} seconds"
            payload = json.dumps({"errorMessage": f"Task timed out after {timeout:.2f} seconds"})
            errored = True
    elapsed_ms = (time.time() - started) * 1000
    lines = [f"START RequestId: {request_id} Version: $LATEST", *output.splitlines()]
    lines += [
        f"END RequestId: {request_id}",
        f"REPORT RequestId: {request_id}\tDuration: {elapsed_ms:.2f} ms",
    ]
    _write_logs(self, stream, lines)
    if errored:
        logger.warning("Function %s failed:\n%s", self.function_name, output)
    tail = "\n".join(lines).encode()[-_LOG_TAIL_BYTES:].decode(errors="ignore")
    return payload, errored, tail


def _text(value: str | bytes | None) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else value
