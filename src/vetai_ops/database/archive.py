"""What a ``pg_dump -Fc`` archive says about itself in its first bytes.

The custom format begins with a header pg_dump writes before any data (WriteHead in
PostgreSQL's pg_backup_archiver.c): ``PGDMP``, the archive version, int/offset sizes, the
format, the compression, the creation time, then three strings: the database name, the
server's version and pg_dump's own version (``PG_VERSION``). A backup reads pg_dump's
version from there instead of running ``pg_dump --version`` on the DB host: it is the
version of the binary that wrote *this* archive, at no extra round trip.
"""

from __future__ import annotations

MAGIC = b"PGDMP"


class _Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise ValueError("archive header truncated")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def int_(self, size: int) -> int:
        sign = self.byte()  # ReadInt: a sign byte, then `size` bytes, least significant first
        v = 0
        for i in range(size):
            v |= self.byte() << (8 * i)
        return -v if sign else v

    def str_(self, size: int) -> str | None:
        n = self.int_(size)
        if n < 0:
            return None
        if n > 4096 or self.pos + n > len(self.data):
            raise ValueError("archive header string out of range")
        s = self.data[self.pos:self.pos + n]
        self.pos += n
        return s.decode("utf-8", "replace")


def parse_header(data: bytes) -> dict:
    """The header fields of a custom-format archive's first bytes (uncompressed: the header is
    never compressed by pg_dump itself). Raises ValueError when it is not one."""
    if not data.startswith(MAGIC):
        raise ValueError("not a pg_dump custom-format archive")
    r = _Reader(data)
    r.pos = len(MAGIC)
    vmaj, vmin, vrev = r.byte(), r.byte(), r.byte()
    int_size, _off_size, fmt = r.byte(), r.byte(), r.byte()
    if not 1 <= int_size <= 8:
        raise ValueError(f"unexpected int size {int_size} in archive header")
    if (vmaj, vmin) >= (1, 15):  # PostgreSQL 16+: the compression algorithm as one byte
        r.byte()
    elif (vmaj, vmin) >= (1, 2):
        r.int_(int_size)
    if (vmaj, vmin) >= (1, 4):
        for _ in range(7):  # creation time: sec, min, hour, mday, mon, year, isdst
            r.int_(int_size)
    out = {"archive_version": f"{vmaj}.{vmin}.{vrev}", "format": fmt, "database": None,
           "server_version": None, "pg_dump_version": None}
    if (vmaj, vmin) >= (1, 4):
        out["database"] = r.str_(int_size)
    if (vmaj, vmin) >= (1, 10):
        out["server_version"] = r.str_(int_size)
        out["pg_dump_version"] = r.str_(int_size)
    return out


def pg_dump_version(head: bytes, compression: str) -> str | None:
    """``pg_dump --version``'s line ("pg_dump (PostgreSQL) 15.18 (Debian ...)") for the archive
    whose stored bytes begin with ``head`` (``compression`` as in the manifest: ``zstd`` stored
    bytes are decompressed first); None when the header cannot be read."""
    try:
        data = head
        if compression == "zstd":
            import zstandard

            data = zstandard.ZstdDecompressor().decompressobj().decompress(head)
        v = parse_header(data).get("pg_dump_version")
    except Exception:  # noqa: BLE001 - truncated, foreign or unreadable: the caller asks pg_dump
        return None
    return f"pg_dump (PostgreSQL) {v}" if v else None
