"""``invoke sandbox.*``: the embedded PostgreSQL of a sandbox env (``vetai_ops.ops.sandbox``)."""

from __future__ import annotations

from invoke import Collection, task

from . import render
from .common import H_VERBOSE, ops

H_SANDBOX_ENV = "an environment with a sandbox: section (default: local)"


@task(name="up", help={"env": H_SANDBOX_ENV, "verbose": H_VERBOSE})
@ops
def sandbox_up(c, env="local", verbose=False):
    """Start the embedded PostgreSQL of a sandbox env (initialising it on first use)."""
    from ..ops.sandbox import up

    s = up(env)
    render.out.print(f"sandbox running: {s['url']} (PostgreSQL {s['version']})", markup=False)


@task(name="down", help={"env": H_SANDBOX_ENV, "destroy": "also delete the sandbox's data directory",
                         "verbose": H_VERBOSE})
@ops
def sandbox_down(c, env="local", destroy=False, verbose=False):
    """Stop the embedded PostgreSQL (and with --destroy remove its data)."""
    from ..ops.sandbox import down

    s = down(env, destroy=destroy)
    render.out.print(("destroyed " if destroy else "stopped ") + s["root"], markup=False)


def collection() -> Collection:
    sandbox = Collection("sandbox")
    sandbox.add_task(sandbox_up, name="up")
    sandbox.add_task(sandbox_down, name="down")
    return sandbox
