"""BackupStore: where dumps and manifests live (a folder or an S3 bucket).

Steps see only this protocol; they never know which store they talk to. Keys are
relative POSIX paths such as ``local/20261124T013200Z.dump``; each store maps them
under its own root/prefix.

Contract every implementation keeps
- ``put_stream`` is atomic: the object becomes visible only after the last byte was
  written and flushed; on any failure nothing is left under ``key`` (S3: the
  multipart upload is aborted; folder: the partial file is removed).
- reads stream; nothing buffers a whole dump in memory.
"""

from __future__ import annotations

from typing import BinaryIO, Callable, ContextManager, Protocol, runtime_checkable

ProgressFn = Callable[[int], None]  # called with the number of bytes just moved


@runtime_checkable
class BackupStore(Protocol):
    kind: str  # "local" | "s3"
    location: str  # human-readable root, e.g. "/srv/app/backups" or "s3://bucket/prefix"

    def put_stream(self, key: str, reader: BinaryIO, *, progress: ProgressFn | None = None,
                   size_hint: int | None = None) -> dict:
        """Copy ``reader`` (read(n) until b"") to ``key``; return what :meth:`stat` returns of
        the stored object (no second request for it). ``size_hint``: an upper estimate of the
        byte count, when known (an S3 store sizes its parts by it)."""

    def open_read(self, key: str, *, etag: str | None = None,
                  version_id: str | None = None) -> ContextManager[BinaryIO]:
        """A readable binary stream of ``key``. ``etag`` / ``version_id`` (pinned in a signed
        manifest): read exactly that object (S3 If-Match / VersionId), or raise
        UntrustedBackup when it was replaced; a folder has neither and ignores them."""

    def stat(self, key: str) -> dict:
        """``{"size", "etag", "version_id"}`` of the stored object (etag/version_id None when
        the store has no such thing): what a manifest pins."""

    def put_bytes(self, key: str, data: bytes) -> None: ...

    def get_bytes(self, key: str) -> bytes: ...

    def list_keys(self, prefix: str = "") -> list[str]:
        """Keys starting with ``prefix``, unordered."""

    def size(self, key: str) -> int: ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None:
        """Delete; missing is fine."""

    def url(self, key: str) -> str:
        """Where a human finds the object (path or s3:// URL)."""

    def local_path(self, key: str) -> str | None:
        """A filesystem path of the object on this machine, if it has one."""

    def free_bytes(self) -> int | None:
        """Room left for new backups, or None when the store has no practical limit (S3)."""

    def abort_incomplete_uploads(self, prefix: str = "", *, older_than_s: float | None = None) -> int:
        """Remove the debris of interrupted uploads that the store itself keeps (S3 multipart
        parts); returns how many. A folder keeps none: its partial files are incomplete dumps."""
