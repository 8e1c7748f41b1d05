"""S3 uploads: a dump streamed as one multipart upload (s3transfer ``TransferConfig``), and
the multipart debris an interrupted upload can leave (listed, aborted). The S3Store
(store/s3.py) delegates its ``put_stream``, ``multipart_uploads`` and
``abort_incomplete_uploads`` here.

- memory stays at about ``(max_concurrency + 2) * part size`` whatever the dump size;
- a failed upload leaves nothing behind: s3transfer aborts its multipart upload on failure;
  this verifies afterwards (``list_multipart_uploads`` + abort of any leftover for the key)
  and deletes an object that may have been completed despite the error.
"""

from __future__ import annotations

from typing import BinaryIO

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import BotoCoreError, ClientError

from ..errors import StoreError
from ..secrets import redact
from .base import ProgressFn
from .s3 import CHUNK, MB, _code

S3_MAX_PARTS = 10_000


def part_size(configured_mb: int, size_hint: int | None) -> int:
    """Multipart part size in bytes: the configured MiB (S3's minimum is 5), raised when
    ``size_hint`` bytes would need more than 9,000 parts (S3 allows 10,000 per upload), so a
    large database is not refused by S3 at its 10,001st part. Memory is about
    ``(max_concurrency + 2) * part size``: it grows only for backups above ~70 GB.

    Why not s3transfer's ``ChunksizeAdjuster``: s3transfer cannot size a non-seekable stream
    (it applies the adjuster only when it knows the size), and the adjuster doubles the part
    until it fits, overshooting by up to 2x, i.e. up to twice the memory held in parts; the
    smallest whole MiB that fits keeps that bound tight. (A 5 GiB part, S3's maximum, is
    only reached at ~45 TB.)"""
    size = max(5, int(configured_mb)) * MB
    if size_hint:
        need = -(-int(size_hint) // (S3_MAX_PARTS - 1000))
        size = max(size, -(-need // MB) * MB)
    return size


class _SourceInterrupted(Exception):
    """Carries a BaseException raised by the source out of s3transfer's threads."""


class _CountingReader:
    """What s3transfer reads from: counts bytes, reports progress, remembers reader errors."""

    def __init__(self, reader: BinaryIO, progress: ProgressFn | None):
        self._r = reader
        self._progress = progress
        self.total = 0
        self.eof = False
        self.error: BaseException | None = None

    def read(self, n: int = -1) -> bytes:
        # s3transfer takes a short read from a non-seekable stream as END OF FILE (it
        # would silently store a truncated dump): pipes and raw sockets return short
        # reads all the time, so fill the request completely unless the source is at EOF.
        if n is None or n < 0:
            parts = []
            while chunk := self._read1(CHUNK):
                parts.append(chunk)
            return b"".join(parts)
        buf = bytearray()
        while len(buf) < n:
            chunk = self._read1(n - len(buf))
            if not chunk:
                break
            buf += chunk
        return bytes(buf)

    def _read1(self, n: int) -> bytes:
        if self.eof:
            return b""
        try:
            data = self._r.read(n)
        except Exception as e:
            self.error = e
            raise
        except BaseException as e:
            # s3transfer's worker threads only handle Exception: a KeyboardInterrupt /
            # SystemExit raised here would leave its future pending forever (a hang).
            # Hand it an Exception; put_stream re-raises the original after cleanup.
            self.error = e
            raise _SourceInterrupted(repr(e)) from e
        if not data:
            self.eof = True
            return b""
        self.total += len(data)
        if self._progress:
            self._progress(len(data))
        return data


def put_stream(store, key: str, reader: BinaryIO, *, progress: ProgressFn | None = None,
               size_hint: int | None = None) -> dict:
    """S3Store.put_stream: one multipart upload (TransferConfig), the object's HEAD returned."""
    full = store._full(key)
    chunk = part_size(store.storage.multipart_chunk_mb, size_hint)
    tc = TransferConfig(
        multipart_threshold=chunk,
        multipart_chunksize=chunk,
        max_concurrency=max(1, store.storage.max_concurrency),
        use_threads=True,
        preferred_transfer_client="classic",
    )
    # bound memory: s3transfer holds up to this many chunks read from a non-seekable stream
    tc.max_in_memory_upload_chunks = max(2, store.storage.max_concurrency + 2)
    extra = {} if store.storage.sse == "none" else {"ServerSideEncryption": store.storage.sse}
    wrapped = _CountingReader(reader, progress)
    try:
        store.client.upload_fileobj(wrapped, store.bucket, full, ExtraArgs=extra, Config=tc)
        # the one HEAD: what the manifest pins (the catalog checks the size against the bytes sent)
        pinned = store.pinned(store.client.head_object(Bucket=store.bucket, Key=full))
    except KeyboardInterrupt:
        cleanup_failed_upload(store, full)
        raise
    except BaseException as e:
        leftover = cleanup_failed_upload(store, full)
        if isinstance(e, _SourceInterrupted) and wrapped.error is not None:
            raise wrapped.error from None  # KeyboardInterrupt / SystemExit from the source
        if leftover is None:
            after = "nothing was stored (no object, no multipart parts)"
        else:
            after = (f"the cleanup could not reach S3 ({leftover}), so an incomplete multipart upload may remain"
                     " under that key; it is never listed as a backup, and `backups.prune` (or a bucket"
                     " lifecycle rule AbortIncompleteMultipartUpload) removes it")
        if isinstance(e, StoreError):
            e.message += f"; {after}"
            raise
        if wrapped.error is e or (wrapped.error is not None and not isinstance(e, (ClientError, BotoCoreError))):
            src = wrapped.error or e
            raise StoreError(
                f"upload to {store.url(key)} aborted after {wrapped.total} bytes: the source stream failed "
                f"({type(src).__name__}: {redact(str(src))}); {after}"
            ) from src
        if isinstance(e, (ClientError, BotoCoreError)):
            err = store._error("upload", key, e)
            err.message += f" after {wrapped.total} bytes; {after}"
            raise err from None
        raise
    return pinned


def cleanup_failed_upload(store, full: str) -> str | None:
    """Leave nothing under ``full``: abort every multipart upload for it, delete any object.

    s3transfer aborts its own multipart upload when a part or the source fails; this
    double-checks (a cancelled transfer, a lost abort, a completion whose answer was
    lost) and is a no-op when there is nothing to do. Returns None when S3 confirmed
    the key is clean, else a short reason (the endpoint is unreachable, ...). Never
    raises: the original failure is what the operator must see.
    """
    c = store.client
    try:
        kwargs = {"Bucket": store.bucket, "Prefix": full}
        while True:
            resp = c.list_multipart_uploads(**kwargs)
            for up in resp.get("Uploads", []):
                if up.get("Key") == full:
                    c.abort_multipart_upload(Bucket=store.bucket, Key=full, UploadId=up["UploadId"])
            if not resp.get("IsTruncated"):
                break
            kwargs["KeyMarker"] = resp.get("NextKeyMarker")
            kwargs["UploadIdMarker"] = resp.get("NextUploadIdMarker")
        c.delete_object(Bucket=store.bucket, Key=full)
    except Exception as e:  # noqa: BLE001 - reported, not raised
        return _code(e)
    return None


def abort_incomplete_uploads(store, prefix: str = "", *, older_than_s: float | None = None) -> int:
    """Abort in-progress multipart uploads under ``prefix`` (all, or those older than
    ``older_than_s`` seconds, so a concurrent backup is left alone). Returns how many.
    For prune: removes parts left when S3 was unreachable during a failed upload."""
    import datetime as _dt

    now = _dt.datetime.now(_dt.timezone.utc)
    n = 0
    for up in multipart_uploads(store, prefix):
        init = up.get("Initiated")
        if older_than_s is not None and init is not None and (now - init).total_seconds() < older_than_s:
            continue
        try:
            store.client.abort_multipart_upload(Bucket=store.bucket, Key=up["Key"], UploadId=up["UploadId"])
            n += 1
        except ClientError as e:
            if _code(e) not in ("NoSuchUpload", "404"):
                raise store._error("abort multipart upload", store._rel(up["Key"]), e) from None
        except BotoCoreError as e:
            raise store._error("abort multipart upload", store._rel(up["Key"]), e) from None
    return n


def multipart_uploads(store, key: str = "") -> list[dict]:
    """In-progress multipart uploads under ``key`` (prefix); for checks and tests."""
    full = store._full(key) if key else (store.prefix + "/" if store.prefix else "")
    out: list[dict] = []
    kwargs = {"Bucket": store.bucket, "Prefix": full}
    try:
        while True:
            resp = store.client.list_multipart_uploads(**kwargs)
            out.extend(resp.get("Uploads", []))
            if not resp.get("IsTruncated"):
                return out
            kwargs["KeyMarker"] = resp.get("NextKeyMarker")
            kwargs["UploadIdMarker"] = resp.get("NextUploadIdMarker")
    except (ClientError, BotoCoreError) as e:
        raise store._error("list multipart uploads", key, e) from None
