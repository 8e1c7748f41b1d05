"""fab's per-host building blocks (``fab -H host <task>``): the steps the invoke tasks run,
on the one host Fabric was given instead of the inventory's host list.

The face reads Fabric's Connection into a :class:`GivenHost` (host, and the user, port, key
and connect timeout Fabric was given for it: ``-H user@host:port``, ``-i key``, ``-t``, its
config files); the SSH target of the run is built from those, the inventory's ``ssh:``
block filling what Fabric was not told. What decides trust stays the inventory's:
``known_hosts`` and ``host_key_policy`` (a protected env never auto-adds a key).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from pydantic import ValidationError

from ..config import Environment, Inventory, Playbook, SSHConfig, StepSpec, load_inventory, valid_host
from ..errors import ConfigError
from ..events import EventSink

# fab task -> (the role of the host -H names, the steps run on it)
HOST_TASKS: dict[str, tuple[str, list[str]]] = {
    "dump": ("db", ["backup"]),
    "restore": ("db", ["lock", "confirm", "restore"]),
    "health": ("app", ["health"]),
    "restart": ("app", ["restart"]),
}


@dataclass(frozen=True)
class GivenHost:
    """The host of ``fab -H``, as Fabric's Connection has it. ``None`` fields: Fabric was not
    told (its defaults), so the inventory's ``ssh:`` values apply."""

    host: str
    original: str  # as given, before ~/.ssh/config's Hostname
    user: str | None = None
    port: int | None = None
    key_files: tuple[str, ...] = ()
    connect_timeout: float | None = None


def host_playbook(task: str) -> Playbook:
    steps = HOST_TASKS[task][1]
    return Playbook(name=f"fab-{steps[0]}", steps=[StepSpec(step=s) for s in steps], on_failure_after=None)


def _ssh_config(base: SSHConfig, given: GivenHost) -> SSHConfig:
    """The env's ``ssh:`` with what Fabric was given for this host (validated as the inventory is)."""
    if len(given.key_files) > 1:
        raise ConfigError(f"{len(given.key_files)} key files given for {given.host} (-i): one only",
                          "pass the key this host accepts with a single -i")
    update = {k: v for k, v in (("user", given.user), ("port", given.port),
                                ("key_file", given.key_files[0] if given.key_files else None),
                                ("connect_timeout", given.connect_timeout)) if v is not None}
    try:
        return SSHConfig.model_validate({**base.model_dump(), **update})
    except ValidationError as e:
        raise ConfigError(f"-H {given.original}: " + "; ".join(err["msg"] for err in e.errors()),
                          "give the user, host and port as the inventory would list them") from None


def _env_for(inv: Inventory, env_name: str | None, role: str, given: GivenHost | None) -> tuple[Environment, dict]:
    """A copy of the env whose ``role`` host is the given one, and the SSH target made for it."""
    e = inv.env(env_name).model_copy(deep=True)
    e.name = inv.env(env_name).name
    targets: dict = {}
    if given is not None:
        for h in (given.original, given.host):  # the same rule as the inventory's hosts
            if not valid_host(h):
                raise ConfigError(f"invalid host name {h!r} given with -H: letters, digits, '.', '-', '_', ':' only",
                                  "pass the host as the inventory would list it, e.g. -H db1.example.internal")
        if e.ssh is None:
            if given.host not in ("localhost", "127.0.0.1"):
                raise ConfigError(f"env {e.name!r} has no ssh: settings, so -H {given.host} cannot be reached from it",
                                  f"drop -H for a local env, or use an env whose inventory entry has ssh: and lists "
                                  f"{given.host}")
        else:  # an SSH env: -H picks the host, reached as Fabric was told
            from ..targets.ssh import SSHTarget

            if role == "db":
                e.hosts.db = [given.host]
            else:
                e.hosts.app = [given.host]
            targets[given.host] = SSHTarget(given.host, _ssh_config(e.ssh, given), protected=e.protected)
    inv.environments[e.name] = e
    return e, targets


def run_on_host(task: str, env_name: str | None, given: GivenHost | None, options: dict | None = None, *,
                sink: EventSink | None = None, confirm: Callable[[str, dict], bool] | None = None) -> dict:
    """Run fab task ``task`` (:data:`HOST_TASKS`) on the given host (``None``: no -H, the
    inventory's hosts). Returns the run's report."""
    from ..pipeline import run_playbook

    inv = load_inventory()
    e, targets = _env_for(inv, env_name, HOST_TASKS[task][0], given)
    pb = host_playbook(task)
    return run_playbook(pb.name, e.name, options=options or {}, sink=sink, confirm=confirm, inventory=inv,
                        playbook=pb, targets=targets)
