"""loginwatch-org: console sign-in alerts for every account of an AWS Organization."""

__version__ = "0.1.0"
