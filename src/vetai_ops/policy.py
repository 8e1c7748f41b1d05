"""The protected-env policy, in one place: what an env with ``protected: true`` refuses, when
it needs ``--yes`` or a typed confirmation, and what it does by default.

The use cases (``ops/``) and the steps ask these functions; none of them tests
``env.protected`` to decide on its own. (The store's trust rule, signed manifests only on a
protected env, is the catalog's: ``store/catalog.py``, given ``protected`` by
``store/factory.py``; the SSH host-key rule is ``targets/ssh/connect.py``'s; the rehearsal decision
is ``validate/datadep.decide``.)

Each ``refuse_*`` raises :class:`~vetai_ops.errors.GateRefused` (exit 2, nothing changed)
or returns; each other function returns the decision.
"""

from __future__ import annotations

from .config import Environment
from .errors import GateRefused

YES_FIX = "re-run with --yes once you have reviewed `invoke plan`"


def asks(env: Environment, *, yes: bool) -> bool:
    """A run on this env needs the operator's typed confirmation (the env's name)."""
    return env.protected and not yes


def refuse_unconfirmed(env: Environment, *, can_ask: bool) -> None:
    """No terminal to ask on, and no ``--yes``: a protected env is never changed unasked."""
    if asks(env, yes=False) and not can_ask:
        raise GateRefused(f"env {env.name!r} is protected and no terminal is attached to confirm", YES_FIX)


def backup_first(env: Environment, *, asked: bool) -> bool:
    """``migrations.upgrade`` / ``downgrade`` take a backup first: on ``--backup``, and always
    on a protected env."""
    return bool(asked or env.protected)


def prune_dry_run(env: Environment, *, dry_run: bool, yes: bool) -> str | None:
    """Why ``backups.prune`` deletes nothing (``None``: it deletes). ``--dry-run`` always wins;
    a protected env only reports unless ``--yes``."""
    if dry_run:
        return "--dry-run"
    if env.protected and not yes:
        return "protected env without --yes"
    return None


def refuse_skip_backup(env: Environment) -> None:
    """``deploy --skip-backup``: no migration without a backup on a protected env."""
    if env.protected:
        raise GateRefused(f"env {env.name!r} is protected: the pre-deploy backup cannot be skipped")


def refuse_no_rehearsal(env: Environment) -> None:
    """``deploy --no-rehearsal``: a protected env's deploys are always rehearsed on a copy."""
    if env.protected:
        raise GateRefused(f"env {env.name!r} is protected: its deploys are always rehearsed on a copy first; "
                          "--no-rehearsal is refused, nothing changed",
                          "deploy without --no-rehearsal (the rehearsal's durations are shown before you confirm)")


def refuse_downgrade(env: Environment, *, yes: bool, dry_run: bool, what: str) -> None:
    """A downgrade can drop data: a protected env needs ``--yes`` (``what``: the revisions)."""
    if env.protected and not yes and not dry_run:
        raise GateRefused(
            f"env {env.name!r} is protected: a downgrade ({what}) needs --yes; nothing changed",
            "review `invoke migrations.history` and the revisions' downgrade(), then re-run with --yes",
        )


def refuse_unlinted(env: Environment) -> None:
    """squawk is missing: a protected env never deploys SQL nobody linted (elsewhere a warning)."""
    if env.protected:
        raise GateRefused(
            f"squawk is not installed, so the pending SQL of protected env {env.name!r} cannot be linted",
            "install the project (`pip install -e .` installs squawk-cli next to the interpreter) "
            "or put squawk on PATH",
        )


def refuse_unsigned_backups(env: Environment) -> None:
    """No manifest key: a protected env's backups could not be signed, and it restores only
    signed ones (elsewhere they are written unsigned, with a warning)."""
    if env.protected:
        raise GateRefused(
            f"env {env.name!r} is protected and has no manifest key: its backups could not be signed, and a"
            " protected env restores only signed backups; nothing was changed",
            "set storage.manifest_key_env to the NAME of an environment variable holding the key, and export it"
            " (README: Security)")
