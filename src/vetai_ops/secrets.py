"""Keep secrets out of argv, logs, manifests and exception text."""

from __future__ import annotations

import re
import threading

_lock = threading.Lock()
_known: set[str] = set()


def register(secret: str | None) -> None:
    """Remember a secret so :func:`redact` scrubs it from any text later."""
    if secret and len(secret) >= 3:
        with _lock:
            _known.add(secret)


_URL_PW = re.compile(r"(://[^:/@\s]+:)([^@\s]+)(@)")


def redact(text: str) -> str:
    if not text:
        return text
    out = _URL_PW.sub(r"\1***\3", str(text))
    with _lock:
        for s in sorted(_known, key=len, reverse=True):
            out = out.replace(s, "***")
    return out
