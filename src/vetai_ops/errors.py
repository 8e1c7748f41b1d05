"""Errors the face turns into one clear message (what, where, fix) and a non-zero exit.

Every expected failure is an :class:`OpsError`. Messages must never contain secrets;
callers pass values through :func:`vetai_ops.secrets.redact` when unsure.
"""

from __future__ import annotations


class OpsError(Exception):
    """An expected failure: shown without a traceback, with a hint on how to fix it."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None, **details):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details

    def __str__(self) -> str:  # one line for logs; the face prints hint separately
        return self.message if not self.hint else f"{self.message} (fix: {self.hint})"


class ConfigError(OpsError):
    """Inventory / playbook problems: names the file and the key."""


class PlaybookError(ConfigError):
    """A playbook that cannot run as written (bad YAML keys, an unknown step, option or
    ``when:`` condition): refused when loaded, before any lock, backup or journal row."""

    exit_code = 2


class TargetError(OpsError):
    """A host could not be reached or a command on it failed."""


class HostKeyError(TargetError):
    """Unknown or changed SSH host key."""


class CommandFailed(TargetError):
    def __init__(self, message: str, hint: str | None = None, *, returncode: int | None = None, stderr: str = ""):
        super().__init__(message, hint)
        self.returncode = returncode
        self.stderr = stderr


class StoreError(OpsError):
    """The backup store failed (disk full, S3 down, object missing)."""


class BackupNotFound(OpsError):
    """`--to` did not name exactly one complete backup (malformed, ambiguous, before every
    backup, in the future): a refusal that changed nothing."""

    exit_code = 2


class ChecksumMismatch(OpsError):
    """Stored bytes do not match the manifest's sha256 (a backup failed verification)."""

    exit_code = 4


class UntrustedBackup(OpsError):
    """A backup whose manifest or stored object cannot be trusted: a signature that does not
    match (forged, or made with another key), a manifest for another env or database, or a
    stored object replaced after the backup was made. Never restored as it is."""

    exit_code = 4


class VerifyFailed(OpsError):
    """A backup did not restore or its copy failed a check."""

    exit_code = 4


class LockHeld(OpsError):
    """Another deploy/rollback holds the env's advisory lock."""

    exit_code = 3


class LockLost(OpsError):
    """The env's advisory lock was lost mid-run (its session ended: network drop, terminated):
    the run stops before the next change rather than risk an unseen second deployer."""


class StreamStalled(TargetError):
    """A dump or restore stream moved no bytes for ``backup.stall_timeout`` seconds; it was stopped."""


class GateRefused(OpsError):
    """Validation / preflight refused the deploy; nothing was changed."""

    exit_code = 2


class UnsignedBackup(GateRefused):
    """An unsigned (or not checkable) backup, refused by policy: on a protected env always,
    elsewhere without ``--trust-unsigned``. Nothing was changed."""


class DeployFailed(OpsError):
    """A step failed after the backup; on_failure ran. `report` says what happened."""

    def __init__(self, message: str, hint: str | None = None, *, report: dict | None = None,
                 exit_code: int = 1):
        super().__init__(message, hint)
        self.report = report or {}
        self.exit_code = exit_code  # the cause's code when the database was left unchanged


class Interrupted(OpsError):
    exit_code = 130


class StopPipeline(Exception):
    """Raised by a step to end a run successfully early (e.g. --dry-run after the plan)."""


def short_error(e: BaseException) -> str:
    """One readable line for an exception (driver errors: the server's message, no SQL dump)."""
    if isinstance(e, OpsError):
        return e.message
    orig = getattr(e, "orig", None)
    text = str(orig if orig is not None else e).strip() or type(e).__name__
    first = text.splitlines()[0]
    return (first[:400] + "...") if len(first) > 400 else first
