"""Keep secrets out of argv, logs, manifests and exception text."""

from __future__ import annotations

import re
import threading
from urllib.parse import quote, quote_plus

_lock = threading.Lock()
_known: set[str] = set()
# environment variables that hold a secret (database.password_env, PGPASSWORD): never
# inherited by the tool's local child processes (they get a 0600 passfile instead)
SECRET_ENV_VARS = {"PGPASSWORD"}


def _forms(secret: str) -> set[str]:
    """The secret as it may appear in text: as is, and URL-encoded (a DSN, a query string)."""
    return {secret, quote(secret, safe=""), quote(secret), quote_plus(secret)}


def register(secret: str | None) -> None:
    """Remember a secret so :func:`redact` scrubs it from any text later."""
    if secret and len(secret) >= 3:
        with _lock:
            _known.update(_forms(secret))


def forget(secret: str) -> None:
    """Stop redacting ``secret`` (tests; a process that switches credentials)."""
    with _lock:
        _known.difference_update(_forms(secret))


def register_env_var(name: str | None) -> None:
    """Name an environment variable that holds a secret (see :data:`SECRET_ENV_VARS`)."""
    if name:
        with _lock:
            SECRET_ENV_VARS.add(name)


def child_environ(base: dict[str, str]) -> dict[str, str]:
    """``base`` without the variables that hold secrets."""
    with _lock:
        drop = set(SECRET_ENV_VARS)
    return {k: v for k, v in base.items() if k not in drop}


_URL_PW = re.compile(r"(://[^:/@\s]+:)([^@\s]+)(@)")
# libpq key=value conninfo (`host=db password='a b' user=x`), query strings (`?password=...`),
# env assignments (`PGPASSWORD=...`): the value, quoted or not
_KV_PW = re.compile(r"(?i)(\b(?:password|passwd|pgpassword)\s*=\s*)('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^\s&;,]+)")


def redact(text: str) -> str:
    """Known secrets first (as is and URL-encoded; a password may itself contain '@' or ':'),
    then URL passwords and ``password=`` values."""
    if not text:
        return text
    out = str(text)
    with _lock:
        for s in sorted(_known, key=len, reverse=True):
            out = out.replace(s, "***")
    out = _URL_PW.sub(r"\1***\3", out)
    return _KV_PW.sub(r"\1***", out)


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
