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


def make_catalog(env: Environment, store=None):
    """The env's backups in its store: checked against its name and database, signed with
    its manifest key (store/signing.py; resolved on first use)."""
    from .catalog import Catalog
    from .signing import manifest_key

    return Catalog(store if store is not None else make_store(env), env.name, database=env.database.name,
                   key=lambda: manifest_key(env), protected=env.protected)
