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


def forget(secret: str) -> None:
    """Stop redacting ``secret`` (tests; a process that switches credentials)."""
    with _lock:
        _known.discard(secret)


_URL_PW = re.compile(r"(://[^:/@\s]+:)([^@\s]+)(@)")


def redact(text: str) -> str:
    """Known secrets first (a password may itself contain '@' or ':'), then URL passwords."""
    if not text:
        return text
    out = str(text)
    with _lock:
        for s in sorted(_known, key=len, reverse=True):
            out = out.replace(s, "***")
    return _URL_PW.sub(r"\1***\3", out)


def redact_data(obj):
    """Redact every string inside a JSON-like structure (dict keys and values, lists).
    Numbers are left alone: a numeric-looking secret never corrupts a size or a count."""
    if isinstance(obj, str):
        return redact(obj)
    if isinstance(obj, dict):
        return {redact_data(k): redact_data(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact_data(v) for v in obj]
    return obj
