"""Targets: run a command on a host and stream bytes in and out.

One interface, two implementations: :class:`~vetai_ops.targets.local.LocalTarget`
(subprocess on this machine) and :class:`~vetai_ops.targets.ssh.SSHTarget` (Fabric /
paramiko channel). Steps only ever see :class:`Target`; they never know which one.

Rules
- ``argv`` is a list of strings; the SSH target quotes it with :func:`shlex.join`,
  so names with shell metacharacters are passed as data, never interpreted.
- ``env`` values must NOT be secrets (sshd has no AcceptEnv; the SSH target prefixes
  them as ``env K=V`` on the remote command line, which ``ps`` shows). Secrets reach
  a host as a 0600 file via :meth:`Target.put_file` (e.g. a PGPASSFILE).
- Output streams are bytes, never decoded (custom-format dumps are binary).
"""

from __future__ import annotations

import shlex
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import BinaryIO, Protocol, Sequence, runtime_checkable


@dataclass
class Result:
    returncode: int
    stdout: bytes
    stderr: str

    @property
    def text(self) -> str:
        return self.stdout.decode("utf-8", "replace")


@runtime_checkable
class Process(Protocol):
    """A started command. ``stdin`` is writable (or None), ``stdout`` readable bytes."""

    stdin: BinaryIO | None
    stdout: BinaryIO

    def wait(self, timeout: float | None = None) -> int:
        """Wait for exit; return the exit status. Closes stdin first if still open."""

    def stderr_text(self) -> str:
        """Everything the command wrote to stderr (call after wait())."""

    def kill(self) -> None:
        """Stop the command (best effort, idempotent)."""


@runtime_checkable
class Target(Protocol):
    name: str  # the host as written in the inventory ("local" for this machine)

    def run(
        self,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        env: dict[str, str] | None = None,
        timeout: float | None = None,
        check: bool = True,
    ) -> Result:
        """Run to completion. check=True raises CommandFailed on non-zero exit."""

    def start(self, argv: Sequence[str], *, env: dict[str, str] | None = None, stdin: bool = False) -> Process:
        """Start a command for streaming. stdin=True gives a writable ``proc.stdin``."""

    def put_file(self, data: bytes, path: str, mode: int = 0o600) -> None:
        """Create ``path`` on the host with ``mode`` before any byte is written."""

    def remove(self, path: str) -> None:
        """Remove a file on the host; missing is fine."""

    def mktemp(self, suffix: str = "") -> str:
        """A fresh private (0600) temporary file path on the host."""

    def free_bytes(self, path: str) -> int:
        """Bytes available to this user on the filesystem holding ``path``."""

    def cpu_count(self) -> int:
        """Cores on the host (for pg_restore -j)."""

    def host_path(self, operator_path: str | None) -> str | None:
        """The path under which this host reads a file of the operator's machine, or None
        when it cannot (another machine): lets a restore use a stored file without a copy."""

    def has_command(self, tool: str) -> bool:
        """Is ``tool`` on the host's PATH?"""

    def reach(self, host: str, port: int) -> AbstractContextManager[tuple[str, int]]:
        """A context giving the (host, port) under which the operator reaches ``host:port``
        as seen from this host: the same address on this machine, a tunnel over SSH."""

    def close(self) -> None: ...


STDERR_LIMIT = 1 << 20  # keep at most the last 1 MiB of a command's stderr


def keep_tail(buf: bytearray, chunk: bytes, limit: int = STDERR_LIMIT) -> None:
    """Append, keeping only the last ``limit`` bytes: the line that says what failed comes last."""
    buf.extend(chunk)
    if len(buf) > limit:
        del buf[:-limit]


def has_command(target: "Target", tool: str) -> bool:
    """Is ``tool`` on the host's PATH?"""
    return target.has_command(tool)


def shell_join(argv: Sequence[str], env: dict[str, str] | None = None) -> str:
    """Quote argv (and non-secret env) into one POSIX shell command line."""
    cmd = shlex.join([str(a) for a in argv])
    if env:
        cmd = "env " + " ".join(shlex.quote(f"{k}={v}") for k, v in env.items()) + " " + cmd
    return cmd


def pipeline(*commands: Sequence[str]) -> list[str]:
    """argv that runs ``cmd1 | cmd2 | ...`` with pipefail, every word quoted."""
    script = " | ".join(shlex.join([str(a) for a in c]) for c in commands)
    return ["bash", "-o", "pipefail", "-c", script]
