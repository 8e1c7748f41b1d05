"""``--to`` as people type it (issue 16): ISO 8601 / RFC 3339 times, -2h, pre-deploy, and the
id-prefix-vs-time rule; ``backups.list --before/--after``; ``backups.verify --to``.

The selection arithmetic runs over a real catalog listing (a LocalStore folder whose backups
sit at chosen times, written through the catalog) with a fixed "now"; everything else runs
end to end on the local env with real backups, times computed from their ids."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import pytest

from procs import cli

from vetai_ops.errors import BackupNotFound
from vetai_ops.store.catalog import Catalog
from vetai_ops.store.manifest import Manifest, id_time
from vetai_ops.units import human_span


IDS = ["20261202T053059Z", "20261202T010000Z", "20261130T120000Z"]
NOW = datetime(2026, 12, 2, 6, 30, tzinfo=timezone.utc)


def iso(bid: str, plus_s: int = 0) -> str:
    return (id_time(bid) + timedelta(seconds=plus_s)).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def catalog(tmp_path):
    """Three complete backups (manifest + dump) at known times in a real folder store."""
    from vetai_ops.store.local import LocalStore

    from vetai_ops.store.signing import ManifestKey

    cat = Catalog(LocalStore(tmp_path / "store"), "local", key=ManifestKey(b"k" * 32, "test"))  # signed: trusted
    for bid in IDS:
        m = Manifest(id=bid, env="local", database="vc", size=1, sha256="0" * 64, revision="0013", created_at=bid,
                     server_version="15", pg_dump_version="15", tool_version="t", git_commit=None, duration_s=1.0,
                     reason="manual", dump_key=cat.dump_key(bid))
        cat.store.put_bytes(m.dump_key, b"PGDMP")
        cat.write_manifest(m)
    assert [m.id for m in cat.list()] == IDS  # the listing the selection runs over
    return cat


# ------------------------------------------------------------------ the forms, over a catalog listing


@pytest.mark.parametrize("to, want, text", [
    ("2026-12-02T05:40:00Z", "20261202T053059Z", "backup 20261202T053059Z, 9 min 1 s before 2026-12-02T05:40:00Z"),
    ("2026-12-02T05:30:59Z", "20261202T053059Z", "taken at 2026-12-02T05:30:59Z"),  # at or before: the same second
    ("2026-12-02T05:30:58Z", "20261202T010000Z", "4 h 30 min before 2026-12-02T05:30:58Z"),
    ("2026-12-02T05:40+01:00", "20261202T010000Z", "before 2026-12-02T04:40:00Z"),  # the offset is honoured
    ("2026-12-02T06:40:00+01:00", "20261202T053059Z", "before 2026-12-02T05:40:00Z"),
    ("2026-12-02 05:40", "20261202T053059Z", "(no zone given: read as UTC"),
    ("2026-12-02T05:40:00.250Z", "20261202T053059Z", "before 2026-12-02T05:40:00.250000Z"),
    ("2026-12-02", "20261130T120000Z", "1 d 12 h before 2026-12-02T00:00:00Z (no zone given: read as UTC"),
    ("-1h", "20261202T010000Z", "4 h 30 min before -1h (2026-12-02T05:30:00Z)"),
    ("-30m", "20261202T053059Z", "29 min 1 s before -30m (2026-12-02T06:00:00Z)"),
    ("-90s", "20261202T053059Z", "before -90s (2026-12-02T06:28:30Z)"),
    ("-1d", "20261130T120000Z", "before -1d (2026-12-01T06:30:00Z)"),
    ("-1h30m", "20261202T010000Z", "before -1h30m (2026-12-02T05:00:00Z)"),
    ("latest", "20261202T053059Z", "(the latest)"),
    ("20261202T053059Z", "20261202T053059Z", "backup 20261202T053059Z"),
    ("20261202T05", "20261202T053059Z", "(prefix 20261202T05)"),
    ("202611", "20261130T120000Z", "(prefix 202611)"),
])
def test_each_form_selects_the_newest_backup_at_or_before(catalog, to, want, text):
    sel = catalog.select(to, now=NOW)
    assert sel.manifest.id == want
    assert text in sel.describe()
    js = sel.to_json()
    assert js["backup"] == want and js["text"] == sel.describe()
    if sel.at is not None:  # times: where it was read and how far the backup is from it
        assert js["before_s"] == (sel.at - id_time(want)).total_seconds() >= 0


def test_naive_time_names_the_local_equivalent_when_the_zone_differs(catalog, monkeypatch):
    monkeypatch.setenv("TZ", "Europe/Madrid")
    time.tzset()
    try:
        text = catalog.select("2026-12-02 05:40", now=NOW).describe()
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert "read as UTC; that is 2026-12-02 06:40:00 CET here" in text


def test_a_time_before_every_backup_is_refused_naming_the_oldest(catalog):
    for to in ("2026-11-01", "2026-11-30T11:59:59Z", "-3d"):
        with pytest.raises(BackupNotFound) as ei:
            catalog.select(to, now=NOW)
        assert ei.value.exit_code == 2
        assert "at or before" in ei.value.message and "the oldest is 20261130T120000Z" in ei.value.message
        assert ei.value.hint.startswith("oldest backups: 20261130T120000Z, 20261202T010000Z")


def test_a_time_in_the_future_is_refused_naming_the_newest(catalog):
    for to in ("2026-12-03", "2026-12-02T06:30:01Z", "2026-12-02T07:30:01+01:00"):
        with pytest.raises(BackupNotFound, match="in the future") as ei:
            catalog.select(to, now=NOW)
        assert ei.value.exit_code == 2
        assert "newest backups: 20261202T053059Z (59 min 1 s ago), 20261202T010000Z" in ei.value.hint


@pytest.mark.parametrize("to", ["yesterday", "+2h", "-", "-2x", "2h", "2026-12-2", "2026-12-02T5:40",
                                "2026-12-02T05:40:00 Z", "2026-W49-3", "\u0662\u0660\u0662\u0666", "2026-12-02T05",
                                "20261202T0540+01:00", "latest; rm -rf /", "pre_deploy"])
def test_malformed_values_are_refused_with_every_form_named(catalog, to):
    with pytest.raises(BackupNotFound, match="is not a backup id nor a time") as ei:
        catalog.select(to, now=NOW)
    assert ei.value.exit_code == 2
    assert "2026-12-02 05:40" in ei.value.message and "-2h" in ei.value.message and "pre-deploy" in ei.value.message


@pytest.mark.parametrize("to, why", [("2026-13-01", "month"), ("2026-12-02T25:00", "hour"),
                                     ("2026-02-30", "day")])
def test_impossible_dates_are_refused(catalog, to, why):
    with pytest.raises(BackupNotFound, match=f"not a valid time: {why}"):
        catalog.select(to, now=NOW)


def test_digit_only_values_are_ids_never_times(catalog):
    # '20261202' is an ISO 8601 basic date too; as a time it would pick 20261130T120000Z. It is an
    # id prefix: two backups that day, so it is ambiguous, and the hint says how to write a time
    for prefix in ("2026", "20261202", "20261202T"):
        with pytest.raises(BackupNotFound, match="ambiguous") as ei:
            catalog.select(prefix, now=NOW)
        assert ei.value.exit_code == 2
        assert "give more characters" in ei.value.hint and "write it with dashes" in ei.value.hint
    assert catalog.select("2026-12-02", now=NOW).manifest.id == "20261130T120000Z"  # with dashes: a time
    # an id-shaped value that names no backup is not read as a time either (it would silently
    # choose 20261202T053059Z): refused, with the nearest ids
    with pytest.raises(BackupNotFound, match="no backup '20261202T0600'") as ei:
        catalog.select("20261202T0600", now=NOW)
    assert "nearest: 20261202T053059Z" in ei.value.hint and "dashes" in ei.value.hint
    with pytest.raises(BackupNotFound, match="no backup '20261202T060000Z'"):
        catalog.select("20261202T060000Z", now=NOW)
    # the exact id wins
    assert catalog.select("20261202T010000Z", now=NOW).kind == "id"


def test_pre_deploy_without_a_journal_is_refused_not_guessed(catalog):
    with pytest.raises(BackupNotFound, match="needs the env's deploy journal"):
        catalog.select("pre-deploy", now=NOW)  # resolve() callers pass no journal
    with pytest.raises(BackupNotFound, match="no deploy left to undo"):
        catalog.select("pre-deploy", now=NOW, history=list)


def test_an_unreadable_journal_never_blocks_a_selection_by_time(catalog):
    def broken():
        raise OSError("deploy_history unreadable")

    sel = catalog.select("2026-12-02T05:40:00Z", now=NOW, history=broken, explain=True)
    assert sel.manifest.id == IDS[0] and sel.undid is None and "undid" not in sel.to_json()
    with pytest.raises(OSError):  # pre-deploy has nothing to go on without it: the error stands
        catalog.select("pre-deploy", now=NOW, history=broken, explain=True)


def test_required_and_empty_store(catalog, tmp_path):
    from vetai_ops.store.local import LocalStore

    with pytest.raises(BackupNotFound, match="required"):
        catalog.select("  ", now=NOW)
    empty = Catalog(LocalStore(tmp_path / "empty"), "local")
    with pytest.raises(BackupNotFound, match="no complete backups"):
        empty.select("2026-12-02", now=NOW)


def test_list_window_bounds(catalog):
    from vetai_ops.store.when import window

    ids = lambda **kw: [m.id for m in window(catalog.list(), now=NOW, **kw)]  # noqa: E731
    assert ids(before="2026-12-02T05:30:59Z") == IDS  # inclusive
    assert ids(before="2026-12-02T05:30:58Z") == IDS[1:]
    assert ids(after="2026-12-02T01:00:00Z") == IDS[:2]  # inclusive
    assert ids(after="2026-12-02 00:00", before="2026-12-02T05:00+01:00") == ["20261202T010000Z"]
    assert ids(after="-6h") == IDS[:2] and ids(before="-6h") == IDS[2:]
    assert ids(before="20261202T010000Z") == IDS[1:]  # a whole id is its instant
    assert ids(after="2026-12-03") == []
    with pytest.raises(BackupNotFound, match="partial id"):
        ids(before="20261202")
    with pytest.raises(BackupNotFound, match="later than --before"):
        ids(after="2026-12-02", before="2026-12-01")
    with pytest.raises(BackupNotFound, match="--after='soon' is not a backup id nor a time"):
        ids(after="soon")
    with pytest.raises(BackupNotFound, match="not an instant"):
        ids(before="pre-deploy")


# ------------------------------------------------------------------ end to end, real backups


def test_cli_rollback_by_time_shows_the_distance_and_refusals_exit_2(local_env):
    local_env.run("deploy", yes=True)
    a = local_env.run("backup")["backup_id"]
    marker = "select count(*) from clients where last_name = 'AfterA'"
    local_env.psql("insert into clients (first_name, last_name) values ('Written', 'AfterA')")
    time.sleep(2.0)  # setup, not a timing assert: ids are whole seconds, so b is at least 2 s after a and b - 1 s is after a
    b = local_env.run("backup")["backup_id"]
    assert (id_time(b) - id_time(a)).total_seconds() >= 2
    # 1 s before b's id time is after a: a is "the state as of" that time
    r = cli("rollback", f"--to={iso(b, -1)}", "--env=local", "--yes", "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)["report"]
    assert rep["restored_id"] == a and local_env.psql(marker) == "0"
    sel = rep["selection"]
    gap = (id_time(b) - id_time(a)).total_seconds() - 1
    assert sel["form"] == "time" and sel["backup"] == a and sel["before_s"] == gap and sel["zone_given"]
    assert sel["undid"] == []  # the only deploy ran before both backups
    assert sel["text"] == f"backup {a}, {human_span(gap)} before {iso(b, -1)}"
    assert f"--to={iso(b, -1)}: {sel['text']}" in r.stderr  # the plan says it
    # no zone: UTC, and the plan says so; the same instant written with an offset picks the same backup
    naive = iso(b).replace("T", " ").rstrip("Z")
    r = cli("rollback", f"--to={naive}", "--env=local", "--yes")
    assert r.returncode == 0, r.stderr
    assert f"rolled back to {b}" in r.stdout and "(no zone given: read as UTC" in r.stderr
    assert local_env.psql(marker) == "1"
    plus1 = (id_time(a) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S+01:00")
    r = cli("rollback", f"--to={plus1}", "--env=local", "--yes", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["report"]["restored_id"] == a, r.stderr
    # relative to now (the last backup is at least 1 s old after this pause; not a timing assert)
    time.sleep(1.1)
    r = cli("rollback", "--to=-1s", "--env=local", "--yes", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["report"]["selection"]["form"] == "relative"
    # refusals: nothing restored, exit 2, the nearest backups named
    kept = local_env.psql("select count(*) from pg_database")
    for to, what, names in ((iso(a, -3600), "at or before", a), ("2099-01-01", "in the future", b),
                            ("-1d", "at or before", a), ("the 05:40 deploy", "not a backup id nor a time", "-2h"),
                            ("2026", "ambiguous", a)):
        r = cli("rollback", f"--to={to}", "--env=local", "--yes")
        assert r.returncode == 2, (to, r.stderr)
        assert what in r.stderr and names in r.stderr and "Traceback" not in r.stderr, (to, r.stderr)
    assert local_env.psql("select count(*) from pg_database") == kept


def test_cli_help_says_how_each_form_is_read():
    r = cli("--help", "rollback")
    assert r.returncode == 0, r.stderr
    text = " ".join(r.stdout.split())
    for part in ("20261202T053059Z", "digit-only values are always ids", "2026-12-02 05:40", "no zone = UTC",
                 "-2h", "pre-deploy", "at or before"):
        assert part in text, part
    r = cli("--help", "backups.list")
    assert "--before" in r.stdout and "--after" in r.stdout


def test_cli_backups_list_window_and_verify_by_time(local_env):
    local_env.run("deploy", yes=True)  # its pre-deploy backup
    a = local_env.run("backup")["backup_id"]
    b = local_env.run("backup")["backup_id"]
    r = cli("backups.list", "--env=local", "--json", f"--after={iso(a)}")
    assert r.returncode == 0, r.stderr
    assert [x["id"] for x in json.loads(r.stdout)] == [b, a]
    r = cli("backups.list", "--env=local", "--json", f"--after={iso(a)}", f"--before={iso(b, -1)}")
    assert [x["id"] for x in json.loads(r.stdout)] == [a]
    r = cli("backups.list", "--env=local", "--json", "--before=-1d")
    assert r.returncode == 0 and json.loads(r.stdout) == []
    r = cli("backups.list", "--env=local", "--after=2026-12-40")
    assert r.returncode == 2 and "not a valid time" in r.stderr
    # verify reads --to the same way
    r = cli("backups.verify", "--env=local", f"--to={iso(b, -1)}", "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["id"] == a and res["ok"] and res["selection"]["form"] == "time"
    r = cli("backups.verify", "--env=local", "--to=2099-01-01")
    assert r.returncode == 2 and "in the future" in r.stderr


def test_pre_deploy_undoes_the_last_deploy_then_the_one_before(local_env, migrations_copy):
    def rev():
        return local_env.psql("select coalesce((select version_num from alembic_version), 'base')")

    local_env.run("deploy", yes=True, target="0011")
    d2 = local_env.run("deploy", yes=True, target="0012")
    d3 = local_env.run("deploy", yes=True)
    assert rev() == "0013"
    # a deploy that failed and was restored by its own on_failure is already undone: skipped
    migrations_copy.add("0014", "0013", 'raise RuntimeError("boom in 0014")')
    r = cli("deploy", "--env=local", "--yes")
    assert r.returncode == 1 and "boom in 0014" in r.stderr
    assert local_env.psql("select outcome from deploy_history order by id desc limit 1") == "failed+restored"
    # any form names the journaled deploys its restore undoes (the restored failure is not one)
    plan = local_env.run("rollback", to=d2["backup_id"], dry_run=True)["plan"]
    assert [e["run_id"] for e in plan["selection"]["undid"]] == [d3["run_id"], d2["run_id"]]
    assert rev() == "0013"  # a dry run changes nothing
    # verify names the same backup rollback will restore
    r = cli("backups.verify", "--env=local", "--to=pre-deploy", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["id"] == d3["backup_id"], r.stderr

    r = cli("rollback", "--to=pre-deploy", "--env=local", "--yes")
    assert r.returncode == 0, r.stderr
    undid = f"deploy {d3['run_id']} of "
    assert f"rolled back to {d3['backup_id']}" in r.stdout and f"undid {undid}" in r.stdout
    assert ": 0012 -> 0013" in r.stdout and f"undoes {undid}" in r.stderr  # the plan names it too
    assert rev() == "0012"

    # that deploy is now undone by the rollback: the next pre-deploy is the one before it
    r = cli("rollback", "--to=pre-deploy", "--env=local", "--yes", "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)["report"]
    assert rep["restored_id"] == d2["backup_id"] and rev() == "0011"
    assert len(rep["selection"]["undid"]) == 1
    ev = rep["selection"]["undid"][0]
    assert ev["run_id"] == d2["run_id"] and (ev["from"], ev["to"]) == ("0011", "0012")
    assert ev["text"] == f"deploy {d2['run_id']} of {ev['finished_at']}: 0011 -> 0012"
    assert ev["finished_at"].endswith("Z")


def test_pre_deploy_refusals(local_env):
    first = local_env.run("deploy", yes=True, target="0011")
    # a deploy whose backup was skipped cannot be undone by pre-deploy: said, not guessed
    local_env.run("deploy", yes=True, skip_backup=True, target="0012")
    r = cli("rollback", "--to=pre-deploy", "--env=local", "--yes")
    assert r.returncode == 2 and "took no backup" in r.stderr and "0011 -> 0012" in r.stderr, r.stderr
    # a rollback to the first deploy's backup, taken before both began, undoes both: nothing left
    r = cli("rollback", f"--to={first['backup_id']}", "--env=local", "--yes")
    assert r.returncode == 0, r.stderr
    r = cli("rollback", "--to=pre-deploy", "--env=local", "--yes")
    assert r.returncode == 2 and "no deploy left to undo" in r.stderr, r.stderr
