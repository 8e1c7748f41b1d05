"""Inventory (environments, hosts, db, storage, checks) and playbooks, validated by pydantic.

A bad file raises :class:`ConfigError` naming the file and the key path
(``environments.prod.storage.bucket: field required``), never a traceback.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError, PlaybookError
from .paths import project_root

# used with fullmatch: `$` would let a trailing newline through; [0-9], never \d (which takes any
# Unicode digit)
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# 36 = 63 (PostgreSQL's identifier limit) - len("_before_<16-char id>_NN"): the names of the
# scratch and retired databases derived from it must not be truncated by the server
DBNAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,35}")
HOST_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]*")
ENV_VAR_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def valid_host(h: str) -> bool:
    """A host name as the inventory (or `fab -H`) may give it: never an option, never a newline."""
    return isinstance(h, str) and HOST_RE.fullmatch(h) is not None


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SSHConfig(Strict):
    user: str | None = None
    port: int = 22
    key_file: str | None = None
    known_hosts: str = "~/.ssh/known_hosts"
    # protected envs never auto-add; "reject" everywhere unless explicitly relaxed
    host_key_policy: Literal["reject", "warn"] = "reject"
    connect_timeout: float = 10.0

    @field_validator("user")
    @classmethod
    def _user(cls, v):
        if v is not None and not NAME_RE.fullmatch(v):
            raise ValueError(f"invalid SSH user {v!r}: letters, digits, '_', '.', '-' only")
        return v


class Hosts(Strict):
    db: list[str] = Field(default_factory=lambda: ["local"])
    app: list[str] = Field(default_factory=list)

    @field_validator("db", "app")
    @classmethod
    def _hosts(cls, v):
        for h in v:
            if not valid_host(h):
                raise ValueError(f"invalid host name {h!r}: letters, digits, '.', '-', '_', ':' only")
        return v

    @field_validator("db")
    @classmethod
    def _one_db(cls, v):
        if len(v) != 1:
            raise ValueError("exactly one DB host is supported (the primary)")
        return v


class Database(Strict):
    name: str = "vetai_connect"
    user: str = "vetai"
    host: str | None = None  # as seen from the DB host; None = Unix socket default
    port: int = 5432
    password_env: str | None = None  # NAME of the operator's env var holding the password
    bin_dir: str | None = None  # where pg_dump/pg_restore live on the DB host (None: PATH)
    maintenance_db: str = "postgres"
    lock_timeout: str = "5s"
    statement_timeout: str = "15min"

    @field_validator("name", "maintenance_db")
    @classmethod
    def _dbname(cls, v):
        if not DBNAME_RE.fullmatch(v):
            raise ValueError(f"invalid database name {v!r}: use letters, digits and '_' (max 36 chars, so the derived _restore_/_before_ names fit PostgreSQL's 63)")
        return v

    @field_validator("user")
    @classmethod
    def _dbuser(cls, v):
        if not NAME_RE.fullmatch(v):
            raise ValueError(f"invalid database user {v!r}")
        return v

    @field_validator("password_env")
    @classmethod
    def _pwenv(cls, v):
        if v is not None and not ENV_VAR_RE.fullmatch(v):
            raise ValueError("password_env must be the NAME of an environment variable, not the password")
        return v


class Storage(Strict):
    type: Literal["local", "s3"] = "local"
    path: str = "backups"  # local: folder (relative to the project)
    bucket: str | None = None
    prefix: str = ""
    region: str | None = None
    endpoint_url: str | None = None
    sse: Literal["AES256", "aws:kms", "none"] = "AES256"
    multipart_chunk_mb: int = 8  # parts held in memory: (max_concurrency + 2) x this; raised for huge backups (store/s3_upload.py part_size)
    max_concurrency: int = 4
    # NAME of the operator's environment variable holding the key that signs this env's
    # manifests (HMAC-SHA256). The store never holds it. Unset: envs with a sandbox or a local
    # store use a generated key file under .vetai/keys/; others write unsigned manifests
    # (refused on protected envs).
    manifest_key_env: str | None = None

    @field_validator("manifest_key_env")
    @classmethod
    def _keyenv(cls, v):
        if v is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", v):
            raise ValueError("manifest_key_env must be the NAME of an environment variable, not the key")
        return v

    @model_validator(mode="after")
    def _s3(self):
        if self.type == "s3" and not self.bucket:
            raise ValueError("storage.type is s3 but storage.bucket is missing")
        if self.bucket is not None and len(self.bucket) < 3:
            raise ValueError("storage.bucket must have at least 3 characters")
        return self


class Checks(Strict):
    http: list[str] = Field(default_factory=list)
    timeout: float = 5.0
    retries: int = 3
    retry_delay: float = 1.0
    row_count_tolerance: float = 0.0  # fraction a table may shrink across a deploy
    # count every table's rows before and after a deploy (count(*): a full read of the data,
    # less than the backup reads; false skips the row-loss check on very large databases)
    row_counts: bool = True
    # a pending statement that rewrites a table bigger than this (MiB) under its ACCESS EXCLUSIVE
    # lock refuses the deploy unless acknowledged (`# vetai-ops: allow rewrite <table>`)
    max_rewrite_mb: int = Field(1024, ge=0)
    # data probes (before the backup): each one's statement_timeout, and the planner row
    # estimate above which a probe reads a TABLESAMPLE SYSTEM sample of about this many rows
    probe_timeout: str = "60s"
    probe_sample_rows: int = Field(1_000_000, ge=1)

    @field_validator("probe_timeout")
    @classmethod
    def _timeout(cls, v):
        if not re.fullmatch(r"[0-9]+ ?(ms|s|min|h)?", v.strip()):
            raise ValueError(f"invalid probe_timeout {v!r}: a PostgreSQL duration such as '60s', '500ms' or '2min'")
        return v.strip()

    @field_validator("http")
    @classmethod
    def _urls(cls, v):
        for u in v:
            if not re.fullmatch(r"https?://[^\s]+", u):
                raise ValueError(f"invalid health check URL {u!r}: an http:// or https:// URL without spaces")
        return v


class Services(Strict):
    restart: list[str] | None = None  # argv run on each app host, rolling
    rolling_delay: float = 0.0  # seconds between two batches
    # restart this many app hosts at once; each batch must pass the health checks before
    # the next one starts (1 = one host at a time, as before)
    batch: int = Field(1, ge=1)
    # stop the rollout once MORE than this many hosts failed (restart or health); 0 = at the
    # first failure. Up to this many hosts may also fail the post-check's health checks.
    max_fail: int = Field(0, ge=0)
    # how many app hosts are worked on at the same time (health checks, a batch's restarts),
    # like Ansible's forks
    forks: int = Field(16, ge=1)
    # write_fence: commands — argv run on each app host to stop / resume the app's writes
    maintenance_on: list[str] | None = None
    maintenance_off: list[str] | None = None


class Sandbox(Strict):
    dir: str = ".vetai/sandbox"
    port: int = 54329
    engine: Literal["auto", "system", "pgserver"] = "auto"


class Backup(Strict):
    compression: Literal["zstd", "gzip", "none"] = "zstd"
    zstd_level: int = 1  # bench: level 1 was both smaller and ~2x cheaper than 3 on 2 cores (bench/README.md)
    compress_on: Literal["host", "operator"] = "host"
    restore_jobs: int | None = None  # None: the DB host's cores
    # a dump or restore stream that moves no bytes for this long is killed and reported
    stall_timeout: float = Field(default=120.0, gt=0)


class Deploy(Strict):
    """How a deploy proves itself before the live database is touched (issue 14)."""

    # rehearse the pending revisions on a scratch copy restored from this run's backup, after
    # the backup and before the live database is migrated: auto = when a pending revision has a
    # data-dependent operation (raw SQL, type change, NOT NULL, unique, check, foreign key,
    # backfill), and always on protected envs; always; off (the team's written choice: a
    # database too big to copy twice). `deploy --no-rehearsal` is refused on protected envs.
    rehearsal: Literal["auto", "always", "off"] = "auto"
    # recovery-time objective: refuse (exit 2, before the backup) a deploy whose rollback,
    # predicted from this env's past restores scaled by the database's size now, takes longer
    max_rollback_s: float | None = Field(None, gt=0)

    @field_validator("rehearsal", mode="before")
    @classmethod
    def _yaml_off(cls, v):
        # YAML 1.1 reads a bare `off` as false (and `on`/`yes` as true)
        if v is False:
            return "off"
        if v is True:
            raise ValueError("write rehearsal: auto or rehearsal: always (a bare on/yes/true is ambiguous)")
        return v


class Environment(Strict):
    protected: bool = False
    description: str | None = None
    sandbox: Sandbox | None = None  # set = the embedded local PostgreSQL
    ssh: SSHConfig | None = None
    hosts: Hosts = Field(default_factory=Hosts)
    database: Database = Field(default_factory=Database)
    storage: Storage = Field(default_factory=Storage)
    checks: Checks = Field(default_factory=Checks)
    services: Services = Field(default_factory=Services)
    backup: Backup = Field(default_factory=Backup)
    deploy: Deploy = Field(default_factory=Deploy)
    downgrade_on_failure: bool = False
    # keep the app from writing from backup start to the end of the post-checks (writes made in
    # that window would be discarded by a restore): none, read_only (the database refuses the
    # app's writes), or commands (services.maintenance_on/off on the app hosts)
    write_fence: Literal["none", "read_only", "commands"] = "none"

    @model_validator(mode="after")
    def _fence(self):
        if self.write_fence == "commands" and not (self.services.maintenance_on and self.services.maintenance_off):
            raise ValueError("write_fence is 'commands' but services.maintenance_on / services.maintenance_off "
                             "are not both set (argv lists run on each app host)")
        return self

    # filled by load_inventory
    name: str = ""


class Inventory(Strict):
    default_env: str = "local"
    environments: dict[str, Environment]

    @field_validator("environments")
    @classmethod
    def _names(cls, v):
        if not v:
            raise ValueError("no environments defined")
        for k in v:
            if not NAME_RE.fullmatch(k):
                raise ValueError(f"invalid environment name {k!r}")
        return v

    # filled by load_inventory
    path: str = ""

    def env(self, name: str | None) -> Environment:
        name = name or self.default_env
        if name not in self.environments:
            known = ", ".join(sorted(self.environments)) or "(none)"
            raise ConfigError(
                f"unknown environment {name!r} in {self.path}",
                f"use one of: {known}, or add it under 'environments:'",
            )
        return self.environments[name]


def env_flag(name: str) -> bool | None:
    """RUN_MIGRATIONS / RUN_SEEDS / IS_FIRST_DEPLOY style overrides: True, False, or None when unset."""
    v = os.environ.get(name)
    if v is None or v.strip() == "":
        return None
    return v.strip().lower() in ("1", "true", "yes", "on")


def inventory_path() -> Path:
    p = os.environ.get("VETAI_OPS_INVENTORY")
    return Path(p).expanduser() if p else project_root() / "playbooks" / "inventory.yml"


def _fmt_loc(loc: tuple) -> str:
    """pydantic's error location as a key path: ``steps[0].options``."""
    return "".join(f"[{x}]" if isinstance(x, int) else f".{x}" for x in loc).lstrip(".")


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"file not found: {path}", "create it, or set VETAI_OPS_INVENTORY to the right file") from None
    try:
        # libyaml's parser when PyYAML has it (the same safe loader, ~10x faster: the inventory and
        # the playbook are read on every run)
        return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}:{where}: not valid YAML ({getattr(e, 'problem', e)})", "fix the YAML syntax") from None


def load_inventory(path: Path | None = None) -> Inventory:
    path = path or inventory_path()
    data = _read_yaml(path)
    if not isinstance(data, dict) or "environments" not in data:
        raise ConfigError(f"{path}: missing key 'environments'", "the file must be a mapping with 'environments:'")
    try:
        inv = Inventory.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = _fmt_loc(err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        more = f" (and {len(e.errors()) - 1} more)" if len(e.errors()) > 1 else ""
        raise ConfigError(f"{path}: {loc}: {msg}{more}", "fix that key in the inventory") from None
    inv.path = str(path)
    for name, env in inv.environments.items():
        env.name = name
    return inv


# ---------------------------------------------------------------- playbooks


class StepSpec(Strict):
    step: str
    name: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    when: str | None = None  # a condition of steps.CONDITIONS, or "not <condition>" (checked at load)

    @property
    def label(self) -> str:
        return self.name or self.step


class Playbook(Strict):
    name: str
    description: str | None = None
    steps: list[StepSpec]
    on_failure: list[StepSpec] = Field(default_factory=list)
    # the step after which a failure triggers on_failure (usually "backup")
    on_failure_after: str | None = "backup"
    path: str = ""


def load_playbook(name: str, directory: Path | None = None) -> Playbook:
    directory = directory or Path(os.environ.get("VETAI_OPS_PLAYBOOKS") or project_root() / "playbooks")
    path = directory / f"{name}.yml"
    data = _read_yaml(path)
    if not isinstance(data, dict):
        raise PlaybookError(f"{path}: a playbook is a mapping with 'steps:'")
    data.setdefault("name", name)
    try:
        pb = Playbook.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        raise PlaybookError(f"{path}: {_fmt_loc(err['loc'])}: {err['msg']}", "fix that key in the playbook") from None
    pb.path = str(path)
    return pb
