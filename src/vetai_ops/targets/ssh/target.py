"""SSHTarget: the :class:`~vetai_ops.targets.base.Target` of a host reached over SSH.

It puts together the connection (:mod:`.connect`: host keys, keepalive, reconnect), the
commands (:mod:`.process`: byte streams, PID/kill) and the tunnel (:mod:`.tunnel`).
Only public paramiko / Fabric calls are used.

Secrets never travel as SSH environment variables (sshd usually has no AcceptEnv)
nor in argv: they reach the host as 0600 files via :meth:`SSHTarget.put_file`.
"""

from __future__ import annotations

import contextlib
import secrets as _secrets
import threading
from typing import Iterator, Sequence

import paramiko

from ...config import SSHConfig
from ...errors import CommandFailed, TargetError
from ..base import Result
from .connect import Link
from .process import SSHProcess, command_line
from .tunnel import Forwarder


class SSHTarget:
    """One host over SSH. Connects lazily on first use, once for every command, file and tunnel."""

    def __init__(self, host: str, ssh: SSHConfig, *, protected: bool = True):
        self.name = host
        self._link = Link(host, ssh, protected=protected)

    # ------------------------------------------------------------ connection

    @property
    def address(self) -> str:
        return self._link.address

    def __repr__(self) -> str:
        user = self._link.ssh.user
        return f"SSHTarget({user + '@' if user else ''}{self.address})"

    # ------------------------------------------------------------ commands

    def start(self, argv: Sequence[str], *, env: dict[str, str] | None = None, stdin: bool = False) -> SSHProcess:
        ch = self._link.open_session()
        try:
            ch.exec_command(command_line(argv, env))
        except (paramiko.SSHException, OSError, EOFError) as e:
            with contextlib.suppress(Exception):
                ch.close()
            raise TargetError(f"could not start {argv[0]} on {self.address}: {e}") from None
        return SSHProcess(ch, stdin=stdin, label=f"{argv[0]}@{self.name}", start=self.start)

    def run(
        self,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        env: dict[str, str] | None = None,
        timeout: float | None = None,
        check: bool = True,
    ) -> Result:
        proc = self.start(argv, env=env, stdin=input is not None)
        timed_out = threading.Event()
        timer = None
        if timeout is not None:

            def _expire():
                timed_out.set()
                proc.kill()

            timer = threading.Timer(timeout, _expire)
            timer.daemon = True
            timer.start()
        writer = None
        if input is not None:

            def _write():
                try:
                    assert proc.stdin is not None
                    proc.stdin.write(input)
                    proc.stdin.close()
                except BaseException:  # the command may exit without reading all input
                    proc.end_input()

            writer = threading.Thread(target=_write, daemon=True)
            writer.start()
        try:
            out = proc.stdout.read()
            if writer is not None:
                writer.join()
            rc = proc.wait()
        except (OSError, EOFError, paramiko.SSHException) as e:
            proc.kill()
            if timed_out.is_set():
                raise TargetError(f"{argv[0]} timed out after {timeout}s on {self.name}") from None
            raise TargetError(f"{argv[0]} on {self.address}: SSH connection lost ({e})",
                              "check the host and the network") from None
        finally:
            if timer is not None:
                timer.cancel()
        if timed_out.is_set():
            raise TargetError(f"{argv[0]} timed out after {timeout}s on {self.name}")
        err = proc.stderr_text()
        if rc == -1 and proc.connection_lost:
            self._link.drop()
            raise TargetError(f"{argv[0]} on {self.address}: SSH connection lost before the command finished",
                              "check the host and the network, then retry")
        if rc == 127 and ("not found" in err or "No such file" in err):
            raise CommandFailed(f"{argv[0]}: command not found on {self.name}", "install it or fix PATH",
                                returncode=rc, stderr=err)
        res = Result(rc, out, err)
        if check and rc != 0:
            raise CommandFailed(
                f"{argv[0]} failed on {self.name} (exit {rc}): {err.strip()[-500:]}",
                returncode=rc,
                stderr=err,
            )
        return res

    # ------------------------------------------------------------ files

    def put_file(self, data: bytes, path: str, mode: int = 0o600) -> None:
        """Write ``data`` to ``path`` so no other user can ever read it.

        The bytes go to a file in a fresh sibling folder made 0700 (``SFTPClient.mkdir``
        fails when the name exists, and sends the mode with the request, so nobody else can
        ever enter it), chmod'ed to 0600 before the first write; then it is renamed over
        ``path`` (atomic; replaces e.g. an empty file from :meth:`mktemp`) and the folder
        removed. ``mode`` is applied before the rename.
        """
        sftp = self._link.sftp()
        folder = f"{path[:path.rfind('/') + 1]}.vetai-put-{_secrets.token_hex(6)}"  # a sibling: same filesystem
        tmp = f"{folder}/file"
        made = False
        try:
            sftp.mkdir(folder, 0o700)
            made = True
            with sftp.open(tmp, "wx") as f:
                sftp.chmod(tmp, 0o600)
                f.write(data)
            if mode != 0o600:
                sftp.chmod(tmp, mode)
            sftp.posix_rename(tmp, path)
            sftp.rmdir(folder)
        except (OSError, paramiko.SSHException, EOFError) as e:
            if made:
                with contextlib.suppress(Exception):
                    sftp.remove(tmp)
                with contextlib.suppress(Exception):
                    sftp.rmdir(folder)
            raise TargetError(f"could not write {path} on {self.address}: {e}") from None

    def remove(self, path: str) -> None:
        try:
            self._link.sftp().remove(path)
        except FileNotFoundError:
            pass
        except (OSError, paramiko.SSHException) as e:
            raise TargetError(f"could not remove {path} on {self.address}: {e}") from None

    def mktemp(self, suffix: str = "") -> str:
        argv = ["mktemp", "--tmpdir", "vetai-ops-XXXXXXXXXX"]
        if suffix:
            argv.insert(1, f"--suffix={suffix}")
        return self.run(argv).text.strip()

    def free_bytes(self, path: str) -> int:
        out = self.run(["df", "-Pk", "--", path]).text.strip().splitlines()
        try:
            return int(out[-1].split()[3]) * 1024
        except (IndexError, ValueError):
            raise TargetError(f"could not parse `df -Pk {path}` output on {self.address}: {out!r}") from None

    def cpu_count(self) -> int:
        try:
            return max(1, int(self.run(["nproc"]).text.strip()))
        except ValueError:
            return 1

    def has_command(self, tool: str) -> bool:
        return self.run(["sh", "-c", 'command -v "$0" >/dev/null', tool], check=False).returncode == 0

    def host_path(self, operator_path: str | None) -> str | None:
        return None  # another machine: the operator's files are not there

    # ------------------------------------------------------------ tunnels

    @contextlib.contextmanager
    def forward(self, remote_host: str, remote_port: int) -> Iterator[int]:
        """Yield a port on 127.0.0.1 whose connections are tunnelled (direct-tcpip)
        through this SSH connection to ``remote_host:remote_port`` as seen from the host."""
        self._link.transport()  # connect now: a bad host key or a refused login fails here, not per connection
        fwd = Forwarder(self._link.live_transport, remote_host, int(remote_port))
        try:
            yield fwd.port
        finally:
            fwd.close()

    @contextlib.contextmanager
    def reach(self, host: str, port: int) -> Iterator[tuple[str, int]]:
        """``host:port`` as seen from this host, reachable from the operator: a tunnel."""
        with self.forward(host, port) as local_port:
            yield "127.0.0.1", local_port

    def close(self) -> None:
        self._link.drop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
