"""Every fast path restores bit-identically (issue 6): each compression mode x each restore
mode (spool + pg_restore -j1 / -jN, the store's own file, zstd -d | pg_restore of verified
compressed bytes), on the embedded local env. (The
streamed mode, pg_restore reading bytes not yet verified, was removed by issue 12.)

dump -> rollback -> plain pg_dump of the restored live DB == plain pg_dump of the DB it
replaced (kept as <db>_before_<id>), and row checksums equal. No timing asserts here:
speed is measured by bench/run.py.
"""

from __future__ import annotations

import subprocess

import pytest

from vetai_ops.errors import ChecksumMismatch
from vetai_ops.transfer import restore as restore_mod
from vetai_ops.store.local import LocalStore

EXCLUDE = ("deploy_history", "vetai_ops_applied")  # the tool's own journal tables change on every run


def fill(le) -> None:
    """Rows of every awkward kind, ~3 MB so streams span several 1 MiB chunks."""
    le.psql(
        "create table blobs (id bigint primary key, payload bytea not null, note text, meta jsonb, n numeric(20,6),"
        " at timestamptz default '2026-01-01T00:00:00Z');"
        "insert into blobs select i, decode(repeat(md5(i::text), 40), 'hex') || sha256(i::text::bytea),"
        " case when i % 7 = 0 then null else 'ñandú ' || repeat(chr(65 + i % 26), i % 300) end,"
        " jsonb_build_object('i', i, 'tags', jsonb_build_array('a', i % 3)), i / 7.0"
        " from generate_series(1, 4000) i;"
        "create index on blobs (note);"
        "create table kinds (k serial primary key, arr int[], t text, b boolean);"
        "insert into kinds (arr, t, b) select array[i, i * 2], E'tab\\there\\nnewline', i % 2 = 0"
        " from generate_series(1, 500) i;"
        "create view v_blobs as select id, length(payload) as len from blobs;"
    )
    # incompressible bytes too (what zstd/gzip cannot shrink)
    le.psql("insert into blobs (id, payload) select 100000 + i, decode(string_agg(lpad(to_hex((random() * 255)::int), 2, '0'), ''), 'hex')"
            " from generate_series(1, 300) i, generate_series(1, 2000) j group by i")


def plain_dump(le, db: str) -> str:
    c = le.cluster()
    argv = [c.bin("pg_dump"), "-h", str(c.socket_dir), "-p", str(c.port), "-U", "vetai", "--no-owner", "-d", db]
    argv += [f"--exclude-table={t}*" for t in EXCLUDE]  # and their sequences
    r = subprocess.run(argv, capture_output=True, text=True, check=True)
    # pg_dump >= 15.14 brackets the script with a random \restrict key: not part of the data
    return "\n".join(ln for ln in r.stdout.splitlines() if not ln.startswith(("\\restrict", "\\unrestrict")))


def row_sums(le, db: str) -> dict:
    c = le.cluster()
    tables = c.psql("select string_agg(relname, ' ' order by relname) from pg_class c join pg_namespace n"
                    " on n.oid = c.relnamespace where n.nspname = 'public' and relkind = 'r'", db=db).split()
    return {t: c.psql(f'select count(*) || md5(coalesce(string_agg(x::text, \'|\' order by x::text), \'\')) from public."{t}" x', db=db)
            for t in tables if t not in EXCLUDE}


def with_backup_settings(le, settings: str) -> None:
    if settings:
        le.inventory.write_text(le.inventory.read_text() + f"    backup: {{{settings}}}\n")


@pytest.fixture
def modes(monkeypatch):
    """Records the restore mode each restore took."""
    seen: list[tuple[str, int]] = []
    real = restore_mod.restore_plan

    def spy(route, m):
        r = real(route, m)
        seen.append(r)
        return r

    monkeypatch.setattr(restore_mod, "restore_plan", spy)
    return seen


CASES = [
    # (id, backup settings, expected compression, expected restore mode, patch)
    ("zstd-host-pipe-j1", "", "zstd", ("pipe", 1), None),
    ("zstd-operator-pipe-j1", "compress_on: operator", "zstd", ("pipe", 1), None),
    ("zstd-level1", "zstd_level: 1", "zstd", ("pipe", 1), None),
    ("zstd-pipe-remote-store", "", "zstd", ("pipe", 1), "no_local_path"),  # compressed bytes spooled, then piped
    ("zstd-spool-j2", "restore_jobs: 2", "zstd", ("spool", 2), None),
    ("zstd-spool-j1-no-zstd-binary", "restore_jobs: 1", "zstd", ("spool", 1), "no_zstd"),
    ("zstd-spool-no-zstd-binary", "restore_jobs: 2", "zstd", ("spool", 2), "no_zstd"),
    ("gzip-file", "compression: gzip", "gzip", "file", None),
    ("none-file-j1", "compression: none, restore_jobs: 1", "none", ("file", 1), None),
    ("gzip-spool-remote-store", "compression: gzip", "gzip", ("spool", 1), "no_local_path"),
    ("none-spool-remote-store", "compression: none, restore_jobs: 2", "none", ("spool", 2), "no_local_path"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_every_mode_restores_bit_identically(local_env, modes, monkeypatch, case):
    _, settings, compression, mode, patch = case
    if patch == "no_zstd":
        monkeypatch.setattr(restore_mod, "has_command", lambda target, tool: False)
    if patch == "no_local_path":  # the store behaves like S3: no file on this machine
        monkeypatch.setattr(LocalStore, "local_path", lambda self, key: None)
    with_backup_settings(local_env, settings)
    fill(local_env)
    rep = local_env.run("backup")
    bid = rep["backup_id"]
    from vetai_ops.store.catalog import Catalog

    cat = Catalog(LocalStore(local_env.backups), "local")
    manifest = cat.read_manifest(bid)
    assert manifest.compression == compression
    before_dump, before_rows = plain_dump(local_env, local_env.dbname), row_sums(local_env, local_env.dbname)
    local_env.psql("delete from blobs where id % 2 = 0; drop table kinds")  # the live DB drifts
    local_env.run("rollback", to=bid, yes=True)
    assert modes and (modes[-1] == mode if isinstance(mode, tuple) else modes[-1][0] == mode)
    after_dump, after_rows = plain_dump(local_env, local_env.dbname), row_sums(local_env, local_env.dbname)
    assert after_rows == before_rows
    assert after_dump == before_dump
    assert int(local_env.psql("select count(*) from blobs")) == 4300


@pytest.mark.parametrize("compression,store_file,mode", [
    ("zstd", False, "pipe"),  # compressed bytes spooled, checked, only then zstd -d | pg_restore
    ("zstd", True, "pipe"),  # the store's own file checked in place, only then zstd -d | pg_restore
    ("none", False, "spool"),
])
def test_spool_restore_of_a_corrupt_backup_never_creates_a_database(local_env, modes, monkeypatch, compression,
                                                                    store_file, mode):
    """The spool (or the store's own file) is verified before pg_restore starts: a flipped
    byte is reported as corruption, no scratch database is created and the live DB is left
    exactly as it was, even when pg_restore itself would have accepted the bytes."""
    if not store_file:
        monkeypatch.setattr(LocalStore, "local_path", lambda self, key: None)  # the store behaves like S3: spool
    with_backup_settings(local_env, f"compression: {compression}, restore_jobs: 1")
    fill(local_env)
    bid = local_env.run("backup")["backup_id"]
    local_env.psql("delete from kinds where k > 10")
    live = row_sums(local_env, local_env.dbname)
    dump = local_env.backups / "local" / f"{bid}.dump"
    data = bytearray(dump.read_bytes())
    data[int(len(data) * 0.6)] ^= 0x01  # inside table data, not the TOC
    dump.write_bytes(bytes(data))
    with pytest.raises(ChecksumMismatch, match="corrupt"):
        local_env.run("rollback", to=bid, yes=True)
    assert modes[-1] == (mode, 1)
    assert row_sums(local_env, local_env.dbname) == live
    assert local_env.psql(f"select count(*) from pg_database where datname like '{local_env.dbname}_restore_%'") == "0"
