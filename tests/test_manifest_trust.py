"""Issue 12, finding 5: manifests are signed, pin the stored object, and only signed backups
are trusted (listed as verified, picked by `latest`, kept by prune as verified, restored).

Real parts: the embedded PostgreSQL, the folder store and a real S3 endpoint (moto server,
versioned and unversioned buckets) through boto3, the real CLI for exit codes. An attacker
here is anyone who can write to the store but does not hold the key: every forgery below
rewrites files or objects with plain JSON and boto3, as such a person would.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import stat
from pathlib import Path

import pytest

from procs import cli

EXIT_FAILURE, EXIT_REFUSED, EXIT_VERIFY = 1, 2, 4  # README: exit codes


def spy_tools(le, tmp_path) -> Path:
    """database.bin_dir -> wrappers that log each real pg_restore / pg_dump run (not --version)
    and exec the cluster's own binaries: proves whether pg_restore ever ran."""
    real = le.cluster().bindir
    d = tmp_path / "bin"
    d.mkdir()
    log = tmp_path / "tools.log"
    for tool in ("pg_dump", "pg_restore"):
        p = d / tool
        p.write_text(f'#!/bin/sh\n[ "$1" = --version ] || echo "{tool}" >> "{log}"\nexec "{real}/{tool}" "$@"\n')
        p.chmod(0o755)
    le.inventory.write_text(le.inventory.read_text().replace("user: vetai}", f"user: vetai, bin_dir: '{d}'}}"))
    return log


def ran(log: Path, tool: str) -> int:
    return log.read_text().split().count(tool) if log.exists() else 0


def seed(le, n: int = 50) -> None:
    le.psql(f"create table if not exists pets (id int primary key, name text);"
            f"insert into pets select i, 'pet ' || i from generate_series(1, {n}) i on conflict do nothing")


def pets(le) -> str:
    return le.psql("select count(*) || ':' || md5(coalesce(string_agg(id || name, ',' order by id), '')) from pets")


def mpath(le, bid) -> Path:
    return le.backups / "local" / f"{bid}.json"


def read_m(le, bid) -> dict:
    return json.loads(mpath(le, bid).read_text())


def forge(le, bid, **changes) -> None:
    """What a person with write access to the store can do: edit the JSON, no key."""
    m = read_m(le, bid)
    m.update(changes)
    mpath(le, bid).write_text(json.dumps(m, indent=2))


def protect(le) -> None:
    le.inventory.write_text(le.inventory.read_text().replace("  local:\n", "  local:\n    protected: true\n"))


def listed(bid=None) -> list[dict]:
    from vetai_ops.ops.status import list_backups

    rows = list_backups("local")
    return [r for r in rows if bid is None or r["id"] == bid]


# ----------------------------------------------------------------------------- signing


def test_manifest_is_signed_over_canonical_json_with_a_private_key(local_env):
    seed(local_env)
    bid = local_env.run("backup")["backup_id"]
    keys = Path(os.environ["VETAI_OPS_KEYS"])
    keyfile = keys / "local.key"
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700 and stat.S_IMODE(keyfile.stat().st_mode) == 0o600
    key = keyfile.read_text().strip().encode()
    m = read_m(local_env, bid)
    sig = m["signature"]
    assert sig["alg"] == "hmac-sha256"
    # the documented canonical form, computed independently: sorted keys, no whitespace, UTF-8, no signature
    body = json.dumps({k: v for k, v in m.items() if k != "signature"}, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")
    assert hmac.compare_digest(sig["mac"], hmac.new(key, body, hashlib.sha256).hexdigest())
    dump = local_env.backups / "local" / f"{bid}.dump"
    assert m["size"] == dump.stat().st_size and m["sha256"] == hashlib.sha256(dump.read_bytes()).hexdigest()
    # the key is nowhere but its file: not in the store, the manifest, the logs
    for p in [*local_env.backups.rglob("*"), *(local_env.root / "logs").rglob("*")]:
        if p.is_file():
            assert key not in p.read_bytes(), p
    row = listed(bid)[0]
    assert row["signed"] is True and row["trust"] == "signed"
    r = cli("backups.list", "--env=local")
    assert r.returncode == 0 and key.decode() not in r.stdout + r.stderr


# ----------------------------------------------------------------------------- forgeries


@pytest.mark.parametrize("field", ["env", "database"])
def test_a_manifest_for_another_env_or_database_is_never_listed_nor_restored(local_env, tmp_path, field):
    seed(local_env)
    bid = local_env.run("backup")["backup_id"]
    forge(local_env, bid, **{field: "prod" if field == "env" else "other_db"})
    log = spy_tools(local_env, tmp_path)
    before = pets(local_env)
    assert listed(bid) == []
    for extra in ([], ["--trust-unsigned"]):
        r = cli("rollback", f"--to={bid}", "--env=local", "--yes", *extra)
        assert r.returncode == EXIT_VERIFY, r.stderr
        assert "not trusted" in r.stderr and "Traceback" not in r.stderr
    assert ran(log, "pg_restore") == 0 and pets(local_env) == before


def test_forged_verifications_and_sha256_are_not_trusted(local_env, tmp_path):
    """Two backups; the newer one's manifest is forged (ok: true, another sha256) without the
    key: it is listed as not signed, never as verified, `latest` is the older signed one, prune
    keeps the older one as the newest verified, and rollback refuses it with exit 4."""
    seed(local_env)
    old = local_env.run("backup")["backup_id"]
    assert cli("backups.verify", f"--to={old}", "--env=local").returncode == 0
    local_env.psql("insert into pets values (1000, 'newer')")
    new = local_env.run("backup")["backup_id"]
    assert new > old
    forge(local_env, new, verifications=[{"at": "2026-01-01T00:00:00Z", "ok": True, "revision": None, "tables": [],
                                          "rows": {}, "duration_s": 1.0, "error": None}],
          sha256="0" * 64)
    row = listed(new)[0]
    assert row["signed"] is False and row["trust"] == "bad-signature" and row["verified"] is False
    assert listed(old)[0]["verified"] is True

    from vetai_ops.config import load_inventory
    from vetai_ops.ops.prune import plan_backups
    from vetai_ops.store.factory import make_catalog
    from datetime import datetime, timezone

    cat = make_catalog(load_inventory().env("local"))
    assert cat.resolve("latest").id == old
    kept, removed = plan_backups(cat.list(), 1, 0, datetime.now(timezone.utc))
    reasons = {k["name"]: k["reason"] for k in kept}
    # the forged newer manifest neither counts as verified nor pushes the signed one out of "newest 1"
    assert "newest verified" in reasons[old] and "newest 1" in reasons[old]
    assert new not in reasons and [r["name"] for r in removed] == [new]

    log = spy_tools(local_env, tmp_path)
    before = pets(local_env)
    r = cli("rollback", f"--to={new}", "--env=local", "--yes")
    assert r.returncode == EXIT_VERIFY and "signature does not match" in r.stderr, r.stderr
    r = cli("backups.verify", f"--to={new}", "--env=local")
    assert r.returncode == EXIT_VERIFY, r.stderr
    assert ran(log, "pg_restore") == 0 and pets(local_env) == before
    # `latest` restores the signed one
    r = cli("rollback", "--to=latest", "--env=local", "--yes", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["report"]["restored_id"] == old


@pytest.mark.parametrize("compression", ["zstd", "gzip"])  # spool mode, and the store's own file
def test_swapped_dump_is_refused_before_pg_restore_runs(local_env, tmp_path, compression):
    """The dump is replaced by another real pg_dump archive. With the manifest left signed, the
    size/sha256 check fails BEFORE pg_restore starts; with a forged sha256 and size to match
    (no key), the signature fails before the dump is even read."""
    if compression == "gzip":
        local_env.inventory.write_text(local_env.inventory.read_text() + "    backup: {compression: gzip}\n")
    seed(local_env)
    bid = local_env.run("backup")["backup_id"]
    local_env.psql("create table evil (x int); insert into pets values (666, 'evil')")
    other = local_env.run("backup")["backup_id"]
    dump, evil = (local_env.backups / "local" / f"{b}.dump" for b in (bid, other))
    dump.write_bytes(evil.read_bytes())
    log = spy_tools(local_env, tmp_path)
    local_env.psql("drop table evil; delete from pets where id = 666")
    before = pets(local_env)

    r = cli("rollback", f"--to={bid}", "--env=local", "--yes")
    assert r.returncode == EXIT_VERIFY and "corrupt" in r.stderr, r.stderr
    assert ran(log, "pg_restore") == 0

    data = dump.read_bytes()
    forge(local_env, bid, sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    r = cli("rollback", f"--to={bid}", "--env=local", "--yes")
    assert r.returncode == EXIT_VERIFY and "signature does not match" in r.stderr, r.stderr
    assert ran(log, "pg_restore") == 0
    assert pets(local_env) == before and local_env.psql("select to_regclass('public.evil')") == ""
    assert local_env.cluster().psql(f"select count(*) from pg_database where datname like '{local_env.dbname}_%'") == "0"


# ----------------------------------------------------------------------------- unsigned backups


def test_unsigned_backup_needs_trust_unsigned_and_is_never_restored_on_a_protected_env(local_env, tmp_path):
    seed(local_env)
    bid = local_env.run("backup")["backup_id"]
    m = read_m(local_env, bid)
    del m["signature"]  # as written before manifests were signed
    m["verifications"] = [{"at": "2026-01-01T00:00:00Z", "ok": True}]
    mpath(local_env, bid).write_text(json.dumps(m))
    row = listed(bid)[0]
    assert row["trust"] == "unsigned" and row["verified"] is False
    log = spy_tools(local_env, tmp_path)
    local_env.psql("insert into pets values (7777, 'after backup')")
    before = pets(local_env)

    r = cli("rollback", f"--to={bid}", "--env=local", "--yes")
    assert r.returncode == EXIT_REFUSED and "--trust-unsigned" in r.stderr, r.stderr
    r = cli("rollback", "--to=latest", "--env=local", "--yes")
    assert r.returncode == EXIT_REFUSED and "none is signed" in r.stderr, r.stderr
    r = cli("backups.verify", f"--to={bid}", "--env=local")
    assert r.returncode == EXIT_REFUSED, r.stderr
    assert ran(log, "pg_restore") == 0 and pets(local_env) == before

    protect(local_env)
    r = cli("rollback", f"--to={bid}", "--env=local", "--yes", "--trust-unsigned")
    assert r.returncode == EXIT_REFUSED and "protected" in r.stderr and "--sign" in r.stderr, r.stderr
    assert ran(log, "pg_restore") == 0 and pets(local_env) == before

    local_env.inventory.write_text(local_env.inventory.read_text().replace("    protected: true\n", ""))
    r = cli("rollback", f"--to={bid}", "--env=local", "--yes", "--trust-unsigned")
    assert r.returncode == 0, r.stderr
    assert "not signed" in r.stderr and ran(log, "pg_restore") == 1
    assert local_env.psql("select count(*) from pets where id = 7777") == "0"


def test_verify_sign_signs_only_after_a_successful_drill(local_env):
    seed(local_env)
    good = local_env.run("backup")["backup_id"]
    local_env.psql("insert into pets values (5000, 'x')")
    bad = local_env.run("backup")["backup_id"]
    for bid in (good, bad):
        m = read_m(local_env, bid)
        del m["signature"]
        mpath(local_env, bid).write_text(json.dumps(m))
    dump = local_env.backups / "local" / f"{bad}.dump"
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dump.write_bytes(bytes(data))

    r = cli("backups.verify", f"--to={bad}", "--env=local", "--sign")
    assert r.returncode == EXIT_VERIFY, r.stderr
    assert "signature" not in read_m(local_env, bad) or read_m(local_env, bad)["signature"] is None
    assert listed(bad)[0]["trust"] == "unsigned"

    protect(local_env)  # the documented path works on a protected env too: it restores only a scratch copy
    r = cli("backups.verify", f"--to={good}", "--env=local", "--sign", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["signed"] is True
    row = listed(good)[0]
    assert row["signed"] is True and row["verified"] is True
    assert read_m(local_env, good)["verifications"][-1]["ok"] is True
    # now a protected env restores it
    r = cli("rollback", f"--to={good}", "--env=local", "--yes")
    assert r.returncode == 0, r.stderr
    assert local_env.psql("select count(*) from pets where id = 5000") == "0"


def test_verification_results_are_signed_too(local_env):
    """backups.verify appends its record and signs again; an edit of that record breaks it."""
    seed(local_env)
    bid = local_env.run("backup")["backup_id"]
    assert cli("backups.verify", f"--to={bid}", "--env=local").returncode == 0
    row = listed(bid)[0]
    assert row["signed"] and row["verified"]
    m = read_m(local_env, bid)
    m["verifications"][-1]["ok"] = False
    mpath(local_env, bid).write_text(json.dumps(m))
    assert listed(bid)[0]["trust"] == "bad-signature"


# ----------------------------------------------------------------------------- keys


def test_key_file_with_loose_permissions_or_a_missing_key_variable_is_refused(local_env, monkeypatch):
    seed(local_env)
    local_env.run("backup")
    keyfile = Path(os.environ["VETAI_OPS_KEYS"]) / "local.key"
    key = keyfile.read_text().strip()
    keyfile.chmod(0o644)
    r = cli("backup", "--env=local")
    assert r.returncode == EXIT_FAILURE and "local.key" in r.stderr and "0600" in r.stderr, r.stderr
    assert key not in r.stderr + r.stdout
    keyfile.chmod(0o600)

    local_env.inventory.write_text(local_env.inventory.read_text().replace(
        "storage: {type: local,", "storage: {manifest_key_env: VETAI_TEST_MANIFEST_KEY, type: local,"))
    monkeypatch.delenv("VETAI_TEST_MANIFEST_KEY", raising=False)
    r = cli("backup", "--env=local")
    assert r.returncode == EXIT_FAILURE and "VETAI_TEST_MANIFEST_KEY" in r.stderr and "not set" in r.stderr, r.stderr
    monkeypatch.setenv("VETAI_TEST_MANIFEST_KEY", "short")
    r = cli("backup", "--env=local")
    assert r.returncode == EXIT_FAILURE and "too short" in r.stderr and "short" not in r.stderr.split("too short")[0]
    monkeypatch.setenv("VETAI_TEST_MANIFEST_KEY", "k" * 40)
    r = cli("backup", "--env=local", "--json")
    assert r.returncode == 0, r.stderr
    bid = json.loads(r.stdout)["id"]
    assert listed(bid)[0]["signed"] is True
    # backups signed with the file key are not trusted under another key
    assert {row["trust"] for row in listed() if row["id"] != bid} == {"bad-signature"}


# ----------------------------------------------------------------------------- S3: pinned objects


def s3_env(le, s3_server, versioned: bool) -> str:
    bucket = s3_server.create_bucket()
    if versioned:
        s3_server.client().put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    le.inventory.write_text(le.inventory.read_text().replace(
        f"storage: {{type: local, path: '{le.backups}'}}",
        f"storage: {{type: s3, bucket: {bucket}, prefix: p, region: us-east-1, endpoint_url: '{s3_server.endpoint_url}'}}"))
    return bucket


@pytest.mark.parametrize("versioned", [False, True], ids=["unversioned", "versioned"])
def test_s3_object_is_pinned_by_etag_and_version(local_env, s3_server, tmp_path, versioned):
    if not s3_server.running:
        s3_server.start()
    bucket = s3_env(local_env, s3_server, versioned)
    s3 = s3_server.client()
    seed(local_env)
    bid = local_env.run("backup")["backup_id"]
    local_env.psql("create table evil (x int)")
    other = local_env.run("backup")["backup_id"]
    m = json.loads(s3.get_object(Bucket=bucket, Key=f"p/local/{bid}.json")["Body"].read())
    head = s3.head_object(Bucket=bucket, Key=f"p/local/{bid}.dump")
    assert m["etag"] == head["ETag"] and m["signature"]["alg"] == "hmac-sha256"
    assert (m["version_id"] == head["VersionId"]) if versioned else m["version_id"] is None
    log = spy_tools(local_env, tmp_path)
    local_env.psql("drop table evil; insert into pets values (4242, 'after')")
    before = pets(local_env)

    # someone with write access replaces the dump object with another real archive
    evil = s3.get_object(Bucket=bucket, Key=f"p/local/{other}.dump")["Body"].read()
    s3.put_object(Bucket=bucket, Key=f"p/local/{bid}.dump", Body=evil)
    r = cli("rollback", f"--to={bid}", "--env=local", "--yes")
    if not versioned:  # If-Match on the pinned ETag: refused before a byte is read
        assert r.returncode == EXIT_VERIFY and "not the object this backup stored" in r.stderr, r.stderr
        assert ran(log, "pg_restore") == 0 and pets(local_env) == before
        return
    # versioned: the pinned version is read, whatever was put since: the real backup comes back
    assert r.returncode == 0, r.stderr
    assert local_env.psql("select to_regclass('public.evil')") == ""
    assert local_env.psql("select count(*) from pets where id = 4242") == "0"
    # and when the pinned version itself is deleted, nothing else is read in its place
    s3.delete_object(Bucket=bucket, Key=f"p/local/{bid}.dump", VersionId=m["version_id"])
    r = cli("rollback", f"--to={bid}", "--env=local", "--yes")
    assert r.returncode == EXIT_VERIFY and "is gone" in r.stderr, r.stderr
    assert ran(log, "pg_restore") == 1
