"""Pick the store an environment's inventory asks for."""

from __future__ import annotations

from pathlib import Path

from ..config import Environment
from ..paths import project_root


def make_store(env: Environment):
    st = env.storage
    if st.type == "s3":
        from .s3 import S3Store

        return S3Store(st)
    from .local import LocalStore

    root = Path(st.path).expanduser()
    if not root.is_absolute():
        root = project_root() / root
    return LocalStore(root)
