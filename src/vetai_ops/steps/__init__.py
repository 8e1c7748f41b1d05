"""Pipeline steps, one module each. A step is ``fn(ctx, **options) -> summary str | None``.

Steps report through ``ctx.emit``; they never print, never know whether a host is local
or SSH, and never know whether the store is S3 or a folder.
"""

from __future__ import annotations

from typing import Callable

from ..errors import ConfigError

_REGISTRY: dict[str, Callable] = {}


def step(name: str):
    def deco(fn):
        _REGISTRY[name] = fn
        return fn

    return deco


# which module defines each built-in step: a run imports only the modules of its playbook's
# steps (a backup needs neither Alembic's command machinery nor pglast); a name not listed
# here (a step of a new module, a typo) loads every module, as before
MODULES = {
    "lock": "lock", "confirm": "confirm", "backup": "backup", "restore": "restore", "restart": "restart",
    "health": "checks", "postcheck": "checks", "migrate": "migrate", "seed": "seed", "verify": "verify",
    "validate": "validate", "preflight": "validate", "plan": "validate", "accept_drift": "drift",
    "downgrade": "downgrade", "downgrade_plan": "downgrade", "adopt_check": "adopt", "adopt_stamp": "adopt",
}


def get_step(name: str) -> Callable:
    if name not in _REGISTRY and name in MODULES:
        import importlib

        importlib.import_module(f"{__name__}.{MODULES[name]}")
    if name not in _REGISTRY:
        _load()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown step {name!r} in playbook", f"use one of: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def _load() -> None:
    from . import adopt, backup, checks, confirm, downgrade, drift, lock, migrate, restart, restore, seed, validate, verify  # noqa: F401
