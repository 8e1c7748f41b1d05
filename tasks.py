"""Invoke entry point: `invoke --list`. Everything lives in the vetai_ops package."""

from vetai_ops.cli import ns  # noqa: F401
