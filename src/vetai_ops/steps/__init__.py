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


def get_step(name: str) -> Callable:
    _load()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown step {name!r} in playbook", f"use one of: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def _load() -> None:
    from . import adopt, backup, checks, confirm, downgrade, drift, lock, migrate, rehearse, restart, restore, seed, validate, verify  # noqa: F401
