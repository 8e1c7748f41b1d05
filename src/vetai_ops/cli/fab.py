"""Per-host building blocks for `fab -H host <task>`: the same steps the invoke tasks run,
with the host given on the command line instead of the inventory's host list.

    fab -H db1.example.internal dump --env=prod
    fab -H app1.example.internal health --env=prod
    fab -H deploy@app1.example.internal:2222 -i ~/.ssh/deploy restart --env=prod
    fab -H db1.example.internal restore --env=prod --to=20261124T013200Z --yes

The run reaches the host as Fabric's Connection ``c`` says: its host, and the user, port,
key (``-i``) and connect timeout (``-t``) Fabric was given; what Fabric was not told comes
from the env's ``ssh:`` block (``vetai_ops.ops.hosts``). Without -H, ``c`` is a plain
Context and the inventory's hosts are used.
"""

from __future__ import annotations

from fabric import task

from . import render
from .common import H_TRUST, H_VERBOSE, confirm, ops, sink

H_FAB_ENV = "inventory environment"


def _given(c):
    """What Fabric's Connection says about the -H host (``None`` without -H). A user, port
    or connect timeout that is only Fabric's default is left to the inventory."""
    from ..ops.hosts import GivenHost

    if getattr(c, "host", None) is None:
        return None
    keys = c.connect_kwargs.get("key_filename") or ()
    return GivenHost(host=c.host, original=c.original_host,
                     user=c.user if c.user != c.config.user else None,
                     port=c.port if c.port != c.config.port else None,
                     key_files=(keys,) if isinstance(keys, str) else tuple(keys),
                     connect_timeout=c.connect_timeout)


def _one(c, task_name: str, env, options=None, verbose=False) -> dict:
    from ..ops.hosts import run_on_host

    return run_on_host(task_name, env, _given(c), options, sink=sink(verbose), confirm=confirm())


@task(help={"env": H_FAB_ENV, "verbose": H_VERBOSE})
@ops
def dump(c, env=None, verbose=False):
    """pg_dump on this host into the env's store (a full, manifest-checked backup)."""
    rep = _one(c, "dump", env, verbose=verbose)
    render.out.print(f"backup {rep.get('backup_id')} -> {rep.get('backup_url')}", markup=False)


@task(help={"env": H_FAB_ENV, "to": "backup id / prefix / latest / a time (2026-12-02T05:40:00Z; no zone = UTC) / -2h / pre-deploy", "yes": "no confirmation",
            "trust_unsigned": H_TRUST, "verbose": H_VERBOSE})
@ops
def restore(c, env=None, to=None, yes=False, trust_unsigned=False, verbose=False):
    """Restore a backup onto this DB host (verify, new DB, check, swap)."""
    rep = _one(c, "restore", env, {"to": to, "yes": yes, "trust_unsigned": trust_unsigned}, verbose=verbose)
    render.out.print(f"restored {rep.get('restored_id')}", markup=False)


@task(help={"env": H_FAB_ENV, "verbose": H_VERBOSE})
@ops
def health(c, env=None, verbose=False):
    """The env's HTTP health checks, fetched on this host."""
    _one(c, "health", env, verbose=verbose)


@task(help={"env": H_FAB_ENV, "verbose": H_VERBOSE})
@ops
def restart(c, env=None, verbose=False):
    """The env's service restart command on this host."""
    _one(c, "restart", env, verbose=verbose)
