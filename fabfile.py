"""Fabric entry point: per-host tasks (`fab -H host --list`). Code lives in the package."""

from vetai_ops.cli.fab import dump, health, restart, restore  # noqa: F401
