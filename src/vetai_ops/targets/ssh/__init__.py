"""A host reached over SSH (Fabric ``Connection`` + the paramiko channel underneath).

- :mod:`.connect`: the connection, host keys checked against the env's known_hosts only,
  keepalive, one reconnect after a cut (:class:`~.connect.Link`).
- :mod:`.process`: a command on its own session channel, byte streams, the PID/kill
  protocol (:class:`~.process.SSHProcess`).
- :mod:`.tunnel`: ``ssh -L`` for the operator's DB connections, rebuilt over a new
  connection after a reconnect (:class:`~.tunnel.Forwarder`).
- :mod:`.target`: :class:`SSHTarget`, the :class:`~vetai_ops.targets.base.Target` over them.
"""

from .target import SSHTarget

__all__ = ["SSHTarget"]
