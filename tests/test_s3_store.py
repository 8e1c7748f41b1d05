"""S3Store against a real S3 HTTP endpoint (moto server on loopback), through boto3."""

from __future__ import annotations

import hashlib
import io
import os
import threading

import pytest
from botocore.config import Config

from vetai_ops.config import Storage
from vetai_ops.errors import StoreError
from vetai_ops.store.base import BackupStore
from vetai_ops.store.s3 import S3Store

MB = 1024 * 1024


class RandomStream:
    """A non-seekable reader of ``size`` pseudo-random bytes (like pg_dump's stdout over SSH),
    returning short reads; optionally raising after ``fail_after`` bytes."""

    def __init__(self, size: int, *, fail_after: int | None = None, exc: BaseException | None = None):
        self.size = size
        self.sent = 0
        self.fail_after = fail_after
        self.exc = exc or OSError("ssh channel closed: pg_dump died")
        self.sha = hashlib.sha256()
        self._block = os.urandom(MB + 7)

    def read(self, n: int = -1) -> bytes:
        if self.fail_after is not None and self.sent >= self.fail_after:
            raise self.exc
        if n is None or n < 0:
            n = self.size - self.sent
        n = min(n, self.size - self.sent, 300_000)  # short reads, like a pipe
        off = self.sent % MB
        out = (self._block[off:] + self._block)[:n]
        self.sent += len(out)
        self.sha.update(out)
        return out


@pytest.fixture
def store(s3_server):
    return S3Store(s3_server.storage(prefix="prod", multipart_chunk_mb=8, max_concurrency=4))


def _no_leftovers(s3_server, bucket: str, full_key: str) -> None:
    c = s3_server.client()
    assert c.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert c.list_objects_v2(Bucket=bucket, Prefix=full_key).get("KeyCount", 0) == 0


def test_protocol(store):
    assert isinstance(store, BackupStore)
    assert store.kind == "s3" and store.location == f"s3://{store.bucket}/prod"
    assert store.url("prod/x.dump") == f"s3://{store.bucket}/prod/prod/x.dump"
    assert store.local_path("a") is None


def test_streamed_multipart_upload_40mb(store, s3_server):
    src = RandomStream(40 * MB + 123)
    seen = []
    pinned = store.put_stream("prod/20261124T013200Z.dump", src, progress=seen.append)
    n = pinned["size"]
    assert n == 40 * MB + 123 == sum(seen)
    c = s3_server.client()
    head = c.head_object(Bucket=store.bucket, Key="prod/prod/20261124T013200Z.dump")
    assert head["ContentLength"] == n
    assert pinned == store.stat("prod/20261124T013200Z.dump")  # what the manifest pins, from the upload's own HEAD
    assert head["ServerSideEncryption"] == "AES256"
    assert "-" in head["ETag"]  # multipart ETag: "<md5-of-md5s>-<parts>"
    assert int(head["ETag"].strip('"').split("-")[1]) == 6  # 40 MB / 8 MB chunks
    assert store.size("prod/20261124T013200Z.dump") == n
    h = hashlib.sha256()
    with store.open_read("prod/20261124T013200Z.dump") as f:
        while chunk := f.read(MB):
            h.update(chunk)
    assert h.hexdigest() == src.sha.hexdigest()
    assert c.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []) == []


def test_small_upload_single_put_and_sse_none(s3_server):
    st = S3Store(s3_server.storage(sse="none"))
    data = b"\x00\xff" * 1000
    assert st.put_stream("a/b.dump", io.BytesIO(data))["size"] == 2000
    head = s3_server.client().head_object(Bucket=st.bucket, Key="a/b.dump")
    assert "ServerSideEncryption" not in head or head["ServerSideEncryption"] is None
    assert st.get_bytes("a/b.dump") == data
    assert st.put_stream("empty.dump", io.BytesIO(b""))["size"] == 0
    assert st.size("empty.dump") == 0


@pytest.mark.parametrize("fail_after", [0, 3 * MB, 20 * MB])
def test_reader_failure_aborts_multipart_and_stores_nothing(store, s3_server, fail_after):
    key = f"prod/fail-{fail_after}.dump"
    with pytest.raises(StoreError) as ei:
        store.put_stream(key, RandomStream(40 * MB, fail_after=fail_after))
    msg = str(ei.value)
    assert store.bucket in msg and key in msg
    assert "pg_dump died" in msg
    assert "testing" not in msg  # no credentials
    _no_leftovers(s3_server, store.bucket, "prod/" + key)
    assert not store.exists(key)
    assert store.list_keys("prod/") == [] or key not in store.list_keys("prod/")


def test_keyboard_interrupt_from_source_is_reraised_and_cleaned(store, s3_server):
    """A BaseException raised by the reader (in s3transfer's thread) must not hang the upload."""
    key = "prod/interrupted.dump"
    with pytest.raises(KeyboardInterrupt):
        store.put_stream(key, RandomStream(40 * MB, fail_after=17 * MB, exc=KeyboardInterrupt()))
    _no_leftovers(s3_server, store.bucket, "prod/" + key)


def test_sigint_in_main_thread_mid_upload(store, s3_server):
    """Ctrl-C as it really arrives: in the main thread, while s3transfer's threads upload."""
    import _thread

    key = "prod/ctrl-c.dump"

    class CtrlC(RandomStream):
        def read(self, n=-1):
            if self.sent >= 17 * MB and not getattr(self, "fired", False):
                self.fired = True
                _thread.interrupt_main()
            return super().read(n)

    with pytest.raises(KeyboardInterrupt):
        store.put_stream(key, CtrlC(60 * MB))
    _no_leftovers(s3_server, store.bucket, "prod/" + key)


def test_cleanup_aborts_orphans_left_by_others(store, s3_server):
    """Defensive path: a leftover multipart upload for the key is aborted after a failure."""
    c = s3_server.client()
    full = "prod/prod/orphan.dump"
    up = c.create_multipart_upload(Bucket=store.bucket, Key=full)
    c.upload_part(Bucket=store.bucket, Key=full, UploadId=up["UploadId"], PartNumber=1, Body=b"x" * (5 * MB))
    with pytest.raises(StoreError):
        store.put_stream("prod/orphan.dump", RandomStream(10 * MB, fail_after=MB))
    _no_leftovers(s3_server, store.bucket, full)


def test_endpoint_down_mid_upload(s3_server):
    """Stop the S3 endpoint while the upload runs: StoreError naming bucket/key and the error code."""
    st = S3Store(s3_server.storage(multipart_chunk_mb=5, max_concurrency=2), connect_timeout=1, read_timeout=5)
    st._config = st._config.merge(Config(retries={"mode": "standard", "max_attempts": 2}))  # keep the test fast
    stopped = threading.Event()

    class Stopper(RandomStream):
        def read(self, n=-1):
            if self.sent >= 12 * MB and not stopped.is_set():
                s3_server.stop()
                stopped.set()
            return super().read(n)

    try:
        with pytest.raises(StoreError) as ei:
            st.put_stream("prod/down.dump", Stopper(30 * MB))
        msg = str(ei.value)
        assert st.bucket in msg and "prod/down.dump" in msg
        assert "EndpointConnectionError" in msg
        assert "testing" not in msg
        # S3 was unreachable, so the abort could not be sent: the message must say so, not claim success
        assert "incomplete multipart upload may remain" in msg
    finally:
        s3_server.start()
    # nothing completed: no object. The orphan upload (if any) is removed by the prune helper.
    assert not st.exists("prod/down.dump")
    st.abort_incomplete_uploads("prod/")
    assert st.multipart_uploads("prod/") == []


def test_small_objects_list_exists_delete(store, s3_server):
    store.put_bytes("prod/a.json", b'{"a": 1}')
    store.put_bytes("prod/b.json", b"{}")
    store.put_bytes("staging/c.json", b"{}")
    assert store.get_bytes("prod/a.json") == b'{"a": 1}'
    assert sorted(store.list_keys("prod/")) == ["prod/a.json", "prod/b.json"]
    assert sorted(store.list_keys()) == ["prod/a.json", "prod/b.json", "staging/c.json"]
    assert store.exists("prod/a.json") and not store.exists("prod/zzz.json")
    assert store.size("prod/b.json") == 2
    # objects outside the store's prefix are invisible
    s3_server.client().put_object(Bucket=store.bucket, Key="prod2/x", Body=b"1")
    s3_server.client().put_object(Bucket=store.bucket, Key="other/prod/x", Body=b"1")
    assert "x" not in " ".join(store.list_keys())
    store.delete("prod/a.json")
    store.delete("prod/a.json")  # missing is fine
    assert not store.exists("prod/a.json")
    with pytest.raises(StoreError, match="missing"):
        store.get_bytes("prod/a.json")
    with pytest.raises(StoreError, match="missing"):
        store.size("prod/a.json")
    with pytest.raises(StoreError, match="missing"):
        with store.open_read("prod/nope.dump"):
            pass


def test_list_keys_paginates(s3_server):
    st = S3Store(s3_server.storage())
    st.page_size = 7
    c = s3_server.client()
    for i in range(45):
        c.put_object(Bucket=st.bucket, Key=f"k/{i:05d}", Body=b"")
    keys = st.list_keys("k/")
    assert len(keys) == 45 and len(set(keys)) == 45


def test_missing_bucket_is_clear(s3_server):
    st = S3Store(Storage(type="s3", bucket="no-such-bucket-vetai", endpoint_url=s3_server.endpoint_url,
                         region="us-east-1"))
    for call in (lambda: st.list_keys(), lambda: st.exists("x"), lambda: st.put_bytes("x", b"1"),
                 lambda: st.put_stream("x.dump", RandomStream(12 * MB)), lambda: st.get_bytes("x"), st.check):
        with pytest.raises(StoreError) as ei:
            call()
        e = ei.value
        assert "no-such-bucket-vetai" in str(e), str(e)
        assert "NoSuchBucket" in str(e) or "missing" in str(e), str(e)
    with pytest.raises(StoreError) as ei:
        st.check()
    assert "create it" in ei.value.hint and "testing" not in str(ei.value)


def test_open_read_partial_reads_and_close(store):
    data = os.urandom(3 * MB + 5)
    store.put_bytes("prod/r.dump", data)
    with store.open_read("prod/r.dump") as f:
        first = f.read(10)
        rest = f.read()
    assert first + rest == data
    assert f.closed


def test_part_size_follows_the_size_hint(s3_server):
    """S3 allows 10,000 parts per upload: a big expected size raises the part size (leaving
    headroom), a small one keeps the configured size; the upload really uses it."""
    from vetai_ops.store.s3_upload import part_size

    assert part_size(8, None) == 8 * MB and part_size(2, None) == 5 * MB  # S3's minimum
    assert part_size(8, 10 * 1024 * MB) == 8 * MB  # 10 GiB: 1,280 parts of 8 MiB
    big = 200 * 1024 * MB  # 200 GiB would need 25,600 parts of 8 MiB
    assert part_size(8, big) == 23 * MB and big / part_size(8, big) < 9000
    st = S3Store(s3_server.storage(prefix="hint", multipart_chunk_mb=5, max_concurrency=2))
    data = RandomStream(13 * MB)
    assert st.put_stream("h.dump", data, size_hint=9000 * 6 * MB)["size"] == 13 * MB
    head = s3_server.client().head_object(Bucket=st.bucket, Key="hint/h.dump", PartNumber=1)
    assert head["ContentLength"] == 6 * MB and head.get("PartsCount") == 3
