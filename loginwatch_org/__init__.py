"""loginwatch-org: console sign-in alerts for every account of an AWS Organization."""

from pathlib import Path

__version__ = "0.1.0"

# Relative to the directory a command runs in. Here, not in config, so that --help need not import pydantic.
DEFAULT_CONFIG_PATH = Path("config/accounts.yaml")
# ``validate`` and its options, which the executable reads itself (``loginwatch_org.entry``) to start fast, and the
# typer application declares: one spelling for both.
VALIDATE_COMMAND = "validate"
CONFIG_FLAGS = ("--config", "-c")
JSON_FLAG = "--json"
# The role AWS Organizations creates in accounts it makes, which the management account may assume: how doctor
# and test-alert read other accounts unless told another role.
DEFAULT_MEMBER_ROLE = "OrganizationAccountAccessRole"
