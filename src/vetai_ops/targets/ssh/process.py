"""A command on an SSH host: its own session channel, byte streams, and the PID/kill protocol.

Every command runs on its own paramiko session channel (``Transport.open_session()`` +
``Channel.exec_command``) and moves bytes untouched (Fabric's ``Connection.run()`` decodes
output to text, which corrupts a custom-format dump).

Stopping a command: sshd ignores RFC 4254 "signal" requests for root logins (and paramiko
has no public call that sends one), and a closed channel only reaches a command when it
next writes. So every command first reports its PID (its shell is the session leader sshd
made with setsid, hence also the process group of a whole pipeline) on stderr, and
:meth:`SSHProcess.kill` sends ``kill -KILL -<pid>`` over a second channel.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
from typing import Callable, Sequence

import paramiko

from ...secrets import redact
from ..base import Process, keep_tail, shell_join

PID_MARK = b"vetai-ops-pid:"  # first stderr line of every command: the remote shell's PID
PID_WAIT_S = 2.0  # how long kill() waits for that line before it gives up on the PID path


def command_line(argv: Sequence[str], env: dict[str, str] | None = None) -> str:
    """The remote shell line: report the shell's PID on stderr, then become the command."""
    return f"echo {PID_MARK.decode()}$$ >&2; exec {shell_join(argv, env)}"


class SSHProcess:
    """A command started on a session channel; mirrors LocalProcess.

    ``start`` starts another command on the same host: :meth:`kill` uses it for
    ``kill -KILL -<pid>``."""

    def __init__(self, channel: paramiko.Channel, *, stdin: bool, label: str,
                 start: Callable[[list[str]], Process] | None = None):
        self._ch = channel
        self._label = label
        self._start = start
        self.pid: int | None = None  # of the remote shell = its process group
        self._pid_seen = threading.Event()
        self.stdout = channel.makefile("rb")
        self.stdin = channel.makefile_stdin("wb") if stdin else None
        if not stdin:
            channel.shutdown_write()  # like stdin=DEVNULL: the command sees EOF at once
        self._err = bytearray()
        self._t = threading.Thread(target=self._drain, name=f"ssh-stderr-{label}", daemon=True)
        self._t.start()

    def _drain(self) -> None:
        head = b""  # stderr up to the end of the PID line
        try:
            while True:
                chunk = self._ch.recv_stderr(65536)
                if not chunk:
                    break
                if not self._pid_seen.is_set():
                    head += chunk
                    line, nl, rest = head.partition(b"\n")
                    if not nl and len(head) < 64:
                        continue
                    if line.startswith(PID_MARK) and line[len(PID_MARK):].isdigit():
                        self.pid = int(line[len(PID_MARK):])
                        chunk = rest
                    else:
                        chunk = head
                    self._pid_seen.set()
                keep_tail(self._err, chunk)
        except Exception:
            pass
        finally:
            if not self._pid_seen.is_set() and head:  # ended before a full first line
                keep_tail(self._err, head)
            self._pid_seen.set()

    def _ended(self) -> bool:
        # status_event is set by exit-status or by the channel closing
        return self._ch.closed or self._ch.status_event.is_set()

    def end_input(self) -> None:
        """EOF on the command's stdin (best effort: the command may have exited already)."""
        with contextlib.suppress(Exception):
            self._ch.shutdown_write()

    def wait(self, timeout: float | None = None) -> int:
        if self.stdin is not None and not self.stdin.closed:
            try:
                self.stdin.close()  # flushes, then channel.shutdown_write() -> EOF on the host
            except (OSError, EOFError, paramiko.SSHException):
                pass
        # set by exit-status or by the channel closing (then exit_status stays -1: killed by
        # a signal, or the connection dropped)
        if not self._ch.status_event.wait(timeout):
            raise subprocess.TimeoutExpired(self._label, timeout)
        self._t.join(5)
        return self._ch.exit_status

    def stderr_text(self) -> str:
        return redact(bytes(self._err).decode("utf-8", "replace"))

    def kill(self) -> None:
        """Stop the command and everything in its pipeline on the host, then drop the channel.

        Without the PID (or when no second channel can be opened: MaxSessions, a dead link)
        the channel is closed: sshd then closes the command's pipes, so it ends at its next
        write (SIGPIPE) or read (EOF)."""
        ch = self._ch
        if self._ended():
            with contextlib.suppress(Exception):
                ch.close()
            return
        self._pid_seen.wait(PID_WAIT_S)
        if self.pid and self._start is not None:
            with contextlib.suppress(Exception):  # a refused channel or a dead link: the close below
                if self._start(["kill", "-KILL", "--", f"-{self.pid}"]).wait(10) == 0:
                    ch.status_event.wait(5)  # the command's end reaches us; its channel closes
        with contextlib.suppress(Exception):
            ch.close()

    @property
    def returncode(self) -> int | None:
        return self._ch.exit_status if self._ch.status_event.is_set() else None

    @property
    def connection_lost(self) -> bool:
        t = self._ch.get_transport()
        return t is None or not t.is_active()
