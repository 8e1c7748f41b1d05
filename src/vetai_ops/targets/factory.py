"""Pick the target for a host from the inventory: this machine or an SSH host."""

from __future__ import annotations

from ..config import SSHConfig
from .base import Target



def make_target(host: str, ssh: SSHConfig | None, protected: bool) -> Target:
    """``LocalTarget`` when the env has no ``ssh:`` block or the host is "local";
    otherwise an :class:`~vetai_ops.targets.ssh.SSHTarget` (lazy: connects on first use).

    "localhost" WITH an ``ssh:`` block stays SSH (a deliberate ssh to this machine,
    e.g. as another user); "local" never does.
    """
    if ssh is None or host == "local":
        from .local import LocalTarget

        return LocalTarget(host)
    from .ssh import SSHTarget

    return SSHTarget(host, ssh, protected=protected)
