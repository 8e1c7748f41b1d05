"""Signals during a run: SIGTERM and SIGHUP behave like Ctrl-C; while on_failure runs they
are held off (:class:`SignalGuard`); a hung-up terminal is detached so the run goes on."""

from __future__ import annotations

import contextlib
import os
import signal


def _ttys() -> set[int]:
    out = set()
    for fd in (0, 1, 2):
        try:
            if os.isatty(fd):
                out.add(fd)
        except OSError:
            pass
    return out


def _detach_terminal(fds: set[int]) -> None:
    """SIGHUP: the terminal is gone, and writing to it now fails (EIO). Point the standard
    streams that were that terminal (``fds``, noted while it was there: a hung-up terminal
    no longer answers isatty) at /dev/null, so the recovery and the journal go on."""
    try:
        null = os.open(os.devnull, os.O_RDWR)
    except OSError:
        return
    try:
        for fd in fds | _ttys():
            try:
                os.dup2(null, fd)
            except OSError:
                pass
    finally:
        os.close(null)


class SignalGuard:
    """SIGTERM and SIGHUP (a dropped terminal or SSH session) behave like Ctrl-C; while
    on_failure runs, further signals are held off."""

    SIGNALS = (signal.SIGTERM, signal.SIGHUP)

    def __enter__(self):
        self.received: str | None = None
        self.ttys = _ttys()
        self._old: dict | None = {}
        try:
            for sig in self.SIGNALS:
                self._old[sig] = signal.signal(sig, self._term)
        except ValueError:  # not the main thread
            self._old = None
        return self

    def _term(self, signum, frame):
        self.received = signal.Signals(signum).name
        if signum == signal.SIGHUP:
            _detach_terminal(self.ttys)
        raise KeyboardInterrupt

    def _hup_held(self, signum, frame):
        self.received = self.received or "SIGHUP"
        _detach_terminal(self.ttys)

    @contextlib.contextmanager
    def shielded(self):
        try:
            old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
            old_term = signal.signal(signal.SIGTERM, signal.SIG_IGN)
            old_hup = signal.signal(signal.SIGHUP, self._hup_held)
        except ValueError:
            yield
            return
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, old_int)
            signal.signal(signal.SIGTERM, old_term)
            signal.signal(signal.SIGHUP, old_hup)

    def __exit__(self, *exc):
        if self._old is not None:
            for sig, old in self._old.items():
                signal.signal(sig, old)
