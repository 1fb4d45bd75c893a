"""loginwatch-org: console sign-in alerts for every account of an AWS Organization."""

from pathlib import Path

__version__ = "0.1.0"

# Relative to the directory a command runs in. Here, not in config, so that --help need not import pydantic.
DEFAULT_CONFIG_PATH = Path("config/accounts.yaml")
# The role AWS Organizations creates in accounts it makes, which the management account may assume: how doctor
# and test-alert read other accounts unless told another role.
DEFAULT_MEMBER_ROLE = "OrganizationAccountAccessRole"
