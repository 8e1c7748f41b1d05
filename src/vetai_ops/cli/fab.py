"""Per-host building blocks for `fab -H host <task>`: the same steps the invoke tasks run,
with the host given on the command line instead of the inventory's host list.

    fab -H db1.example.internal dump --env=prod
    fab -H app1.example.internal health --env=prod
    fab -H app1.example.internal restart --env=prod
    fab -H db1.example.internal restore --env=prod --to=20261124T013200Z --yes
"""

from __future__ import annotations


from fabric import task

from ..config import Playbook, StepSpec, load_inventory, valid_host
from ..errors import ConfigError
from . import render
from .tasks import H_TRUST, H_VERBOSE, _run, ops


def _env_for(c, env: str | None, role: str):
    inv = load_inventory()
    e = inv.env(env).model_copy(deep=True)
    e.name = inv.env(env).name
    host = getattr(c, "host", None)
    if host is not None and not valid_host(host):  # the same rule as the inventory's hosts
        raise ConfigError(f"invalid host name {host!r} given with -H: letters, digits, '.', '-', '_', ':' only",
                          "pass the host as the inventory would list it, e.g. -H db1.example.internal")
    if host and e.ssh is None and host not in ("localhost", "127.0.0.1"):
        raise ConfigError(f"env {e.name!r} has no ssh: settings, so -H {host} cannot be reached from it",
                          f"drop -H for a local env, or use an env whose inventory entry has ssh: and lists {host}")
    if host and e.ssh is not None:  # an SSH env: -H picks the host
        if role == "db":
            e.hosts.db = [host]
        else:
            e.hosts.app = [host]
    inv.environments[e.name] = e
    return inv, e


def _one(c, env, role, steps, options=None, verbose=False):
    inv, e = _env_for(c, env, role)
    pb = Playbook(name=f"fab-{steps[0]}", steps=[StepSpec(step=s) for s in steps], on_failure_after=None)
    return _run(pb.name, e.name, options or {}, False, verbose, inventory=inv, playbook=pb)


@task(help={"env": "inventory environment", "verbose": H_VERBOSE})
@ops
def dump(c, env=None, verbose=False):
    """pg_dump on this host into the env's store (a full, manifest-checked backup)."""
    rep = _one(c, env, "db", ["backup"], verbose=verbose)
    render.out.print(f"backup {rep.get('backup_id')} -> {rep.get('backup_url')}", markup=False)


@task(help={"env": "inventory environment", "to": "backup id / prefix / latest / a time (2026-12-02T05:40:00Z; no zone = UTC) / -2h / pre-deploy", "yes": "no confirmation",
            "trust_unsigned": H_TRUST, "verbose": H_VERBOSE})
@ops
def restore(c, env=None, to=None, yes=False, trust_unsigned=False, verbose=False):
    """Restore a backup onto this DB host (verify, new DB, check, swap)."""
    rep = _one(c, env, "db", ["lock", "rollback_plan", "confirm", "restore"], {"to": to, "yes": yes, "trust_unsigned": trust_unsigned},
               verbose=verbose)
    render.out.print(f"restored {rep.get('restored_id')}", markup=False)


@task(help={"env": "inventory environment", "verbose": H_VERBOSE})
@ops
def health(c, env=None, verbose=False):
    """The env's HTTP health checks, fetched on this host."""
    _one(c, env, "app", ["health"], verbose=verbose)


@task(help={"env": "inventory environment", "verbose": H_VERBOSE})
@ops
def restart(c, env=None, verbose=False):
    """The env's service restart command on this host."""
    _one(c, env, "app", ["restart"], verbose=verbose)
