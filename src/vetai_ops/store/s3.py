"""Backups in an S3 bucket (or any S3-compatible endpoint) through boto3.

- Credentials: boto3's standard chain only (env vars, shared profiles, instance roles);
  never from the inventory, never in messages.
- ``put_stream`` streams with s3transfer (TransferConfig multipart), and a failed upload
  leaves nothing behind: store/s3_upload.py (loaded only when uploading).
- Reads stream (``open_read``, pinned to the manifest's ETag / VersionId); listings page.
"""

from __future__ import annotations

import contextlib
import threading
from typing import BinaryIO, Iterator

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, PartialCredentialsError

from ..config import Storage
from ..errors import StoreError, UntrustedBackup
from ..secrets import redact
from .base import ProgressFn

MB = 1024 * 1024
CHUNK = MB
NOT_FOUND = ("404", "NoSuchKey", "NotFound")
NO_BUCKET = ("NoSuchBucket",)


def _code(e: BaseException) -> str:
    if isinstance(e, ClientError):
        err = e.response.get("Error", {})
        return str(err.get("Code") or e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or "ClientError")
    return type(e).__name__


def _detail(e: BaseException) -> str:
    if isinstance(e, ClientError):
        err = e.response.get("Error", {})
        return redact(str(err.get("Message") or "")).strip()
    return redact(str(e)).strip()


class _Body:
    """A botocore StreamingBody with a plain file-like face; close() releases the connection."""

    def __init__(self, body):
        self._b = body
        self.closed = False

    def read(self, n: int = -1) -> bytes:
        try:
            return self._b.read(None if n is None or n < 0 else n)
        except (BotoCoreError, OSError) as e:
            raise StoreError(f"reading the backup from S3 failed: {_detail(e)}") from None

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(Exception):
                self._b.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class S3Store:
    kind = "s3"

    def __init__(self, storage: Storage, *, connect_timeout: float = 10, read_timeout: float = 60):
        if not storage.bucket:
            raise StoreError("storage.type is s3 but storage.bucket is missing", "set storage.bucket in the inventory")
        self.storage = storage
        self.bucket = storage.bucket
        self.prefix = storage.prefix.strip("/")
        self.location = f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"
        s3_opts = {"addressing_style": "path"} if storage.endpoint_url else {}
        self._config = Config(
            retries={"mode": "standard", "max_attempts": 5},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            s3=s3_opts,
        )
        self._client = None
        self._client_lock = threading.Lock()

    # ------------------------------------------------------------ plumbing

    @property
    def client(self):
        with self._client_lock:
            if self._client is None:
                session = boto3.session.Session()  # standard credential chain, own session (thread-safe use)
                self._client = session.client(
                    "s3",
                    endpoint_url=self.storage.endpoint_url,
                    region_name=self.storage.region,
                    config=self._config,
                )
            return self._client

    def _full(self, key: str) -> str:
        key = key.lstrip("/")
        return f"{self.prefix}/{key}" if self.prefix else key

    def _rel(self, full: str) -> str:
        return full[len(self.prefix) + 1 :] if self.prefix else full

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._full(key)}"

    def local_path(self, key: str) -> str | None:
        return None

    def _error(self, what: str, key: str | None, e: BaseException) -> StoreError:
        where = self.url(key) if key is not None else f"s3://{self.bucket}"
        code = _code(e)
        detail = _detail(e)
        msg = f"S3 {what} failed for {where}: {code}" + (f" ({detail})" if detail and detail != code else "")
        hint = None
        if code in NO_BUCKET:
            hint = (f"bucket {self.bucket!r} does not exist at "
                    f"{self.storage.endpoint_url or 'AWS'}{' region ' + self.storage.region if self.storage.region else ''}:"
                    " create it (`aws s3 mb s3://" + self.bucket + "`) or fix storage.bucket / storage.region")
        elif isinstance(e, (NoCredentialsError, PartialCredentialsError)) or code in (
            "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"
        ):
            hint = "set AWS credentials the standard way (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or an instance role)"
        elif code in ("AccessDenied", "403", "AllAccessDisabled"):
            hint = f"grant this identity s3:PutObject/GetObject/ListBucket/DeleteObject/AbortMultipartUpload on {self.bucket}"
        elif code in ("EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError"):
            hint = f"check that the S3 endpoint {self.storage.endpoint_url or '(AWS)'} is reachable, then retry"
        return StoreError(msg, hint, code=code)

    # ------------------------------------------------------------ streaming

    def put_stream(self, key: str, reader: BinaryIO, *, progress: ProgressFn | None = None,
                   size_hint: int | None = None) -> dict:
        from .s3_upload import put_stream

        return put_stream(self, key, reader, progress=progress, size_hint=size_hint)

    def free_bytes(self) -> int | None:
        return None  # a bucket has no practical size limit

    def abort_incomplete_uploads(self, prefix: str = "", *, older_than_s: float | None = None) -> int:
        """Abort in-progress multipart uploads under ``prefix`` (store/s3_upload.py)."""
        from .s3_upload import abort_incomplete_uploads

        return abort_incomplete_uploads(self, prefix, older_than_s=older_than_s)

    def multipart_uploads(self, key: str = "") -> list[dict]:
        """In-progress multipart uploads under ``key`` (prefix); for checks and tests."""
        from .s3_upload import multipart_uploads

        return multipart_uploads(self, key)

    @contextlib.contextmanager
    def open_read(self, key: str, *, etag: str | None = None, version_id: str | None = None) -> Iterator[BinaryIO]:
        pin = {}
        if etag:
            pin["IfMatch"] = etag  # the object the manifest pinned, or 412: never another one's bytes
        if version_id:
            pin["VersionId"] = version_id  # versioned bucket: that version, whatever was put since
        try:
            resp = self.client.get_object(Bucket=self.bucket, Key=self._full(key), **pin)
        except ClientError as e:
            code = _code(e)
            if code in ("PreconditionFailed", "412"):
                raise UntrustedBackup(
                    f"{self.url(key)} is not the object this backup stored: its ETag is no longer {etag}"
                    " (it was replaced after the backup was made); nothing was read from it",
                    "restore another backup (`invoke backups.list`) and find out who can write to the bucket") from None
            if version_id and code in ("NoSuchVersion", "InvalidArgument"):
                raise UntrustedBackup(
                    f"version {version_id[:64]} of {self.url(key)}, the one this backup stored, is gone ({code});"
                    " nothing was read",
                    "restore another backup (`invoke backups.list`) and find out who can delete object versions") from None
            if code in NOT_FOUND:
                raise StoreError(f"backup object missing: {self.url(key)}") from None
            raise self._error("download", key, e) from None
        except BotoCoreError as e:
            raise self._error("download", key, e) from None
        body = _Body(resp["Body"])
        try:
            yield body  # type: ignore[misc]
        finally:
            body.close()

    # ------------------------------------------------------------ small objects

    def put_bytes(self, key: str, data: bytes) -> None:
        extra = {} if self.storage.sse == "none" else {"ServerSideEncryption": self.storage.sse}
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._full(key), Body=data, **extra)
        except (ClientError, BotoCoreError) as e:
            raise self._error("write", key, e) from None

    def get_bytes(self, key: str) -> bytes:
        with self.open_read(key) as f:
            return f.read()

    page_size = 1000  # list_objects_v2 MaxKeys (S3's maximum)

    def list_keys(self, prefix: str = "") -> list[str]:
        full = self._full(prefix) if prefix else (self.prefix + "/" if self.prefix else "")
        out: list[str] = []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=full, PaginationConfig={"PageSize": self.page_size})
            for page in pages:
                for obj in page.get("Contents", []):
                    out.append(self._rel(obj["Key"]))
        except (ClientError, BotoCoreError) as e:
            raise self._error("list", prefix, e) from None
        return out

    def _head(self, key: str) -> dict | None:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=self._full(key))
        except ClientError as e:
            if _code(e) in NOT_FOUND:
                # HEAD has no body: a missing bucket also answers 404; tell them apart
                self.check()
                return None
            raise self._error("stat", key, e) from None
        except BotoCoreError as e:
            raise self._error("stat", key, e) from None

    @staticmethod
    def pinned(head: dict) -> dict:
        """What a manifest pins of the object a HEAD describes."""
        vid = head.get("VersionId")
        return {"size": int(head["ContentLength"]), "etag": head.get("ETag"),
                "version_id": vid if vid and vid != "null" else None}

    def stat(self, key: str) -> dict:
        head = self._head(key)
        if head is None:
            raise StoreError(f"backup object missing: {self.url(key)}")
        return self.pinned(head)

    def size(self, key: str) -> int:
        head = self._head(key)
        if head is None:
            raise StoreError(f"backup object missing: {self.url(key)}")
        return int(head["ContentLength"])

    def exists(self, key: str) -> bool:
        return self._head(key) is not None

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._full(key))
        except ClientError as e:
            if _code(e) in NOT_FOUND:
                return
            raise self._error("delete", key, e) from None
        except BotoCoreError as e:
            raise self._error("delete", key, e) from None

    def check(self) -> None:
        """Preflight: the bucket exists and we may use it (HeadBucket)."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as e:
            code = _code(e)
            if code in ("404", "NoSuchBucket", "NotFound"):
                e.response.setdefault("Error", {})["Code"] = "NoSuchBucket"
            elif code == "403":
                e.response.setdefault("Error", {})["Code"] = "AccessDenied"
            raise self._error("access to the bucket", None, e) from None
        except BotoCoreError as e:
            raise self._error("access to the bucket", None, e) from None
