"""Backup stores: a folder (LocalStore) or S3 (S3Store), one protocol."""

from .base import BackupStore
from .local import LocalStore

__all__ = ["BackupStore", "LocalStore"]
