"""Run commands on hosts: local subprocess or SSH (Fabric)."""

from .base import Process, Result, Target, has_command, pipeline, shell_join

__all__ = ["Process", "Result", "Target", "has_command", "pipeline", "shell_join"]
