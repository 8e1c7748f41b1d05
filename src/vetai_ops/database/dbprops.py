"""What a database is at the database level, beyond what ``pg_dump`` carries: owner, ACL,
per-database and per-role-in-database settings, encoding / collation / ctype / locale
provider, tablespace, connection limit, comment.

``pg_dump`` of one database (without ``--create``) carries none of these, so a restore into a
new database would silently lose them (the app's CONNECT grant, its ``ALTER ROLE ... IN
DATABASE ... SET`` settings, the database's collation...). :func:`capture` records them (the
backup puts them in the manifest); :func:`create_statement` creates the restore copy with
the same encoding and locale; :func:`apply` gives the copy the rest before the swap. All SQL
is composed with psycopg.sql; values come from the catalog or a manifest, never from a shell.
"""

from __future__ import annotations

from typing import Any, Callable

from psycopg import sql

from .pg import dicts, scalar

# settings whose value is a list of quoted elements (pg_dump's variable_is_guc_list_quote):
# re-applied element by element, as pg_dump/pg_dumpall do
LIST_QUOTE = {"local_preload_libraries", "search_path", "session_preload_libraries",
              "shared_preload_libraries", "temp_tablespaces", "unix_socket_directories"}

_DB = """
SELECT pg_get_userbyid(d.datdba) AS owner, pg_encoding_to_char(d.encoding) AS encoding,
       d.datcollate AS collate, d.datctype AS ctype, d.datconnlimit AS connection_limit,
       shobj_description(d.oid, 'pg_database') AS comment, d.datacl IS NULL AS default_acl,
       to_jsonb(d) ->> 'datlocprovider' AS locale_provider,
       coalesce(to_jsonb(d) ->> 'daticulocale', to_jsonb(d) ->> 'datlocale') AS icu_locale,
       nullif(t.spcname, 'pg_default') AS tablespace
FROM pg_database d JOIN pg_tablespace t ON t.oid = d.dattablespace WHERE d.datname = %(n)s
"""
_ACL = """
SELECT coalesce(r.rolname, 'PUBLIC') AS grantee, a.privilege_type AS privilege, a.is_grantable AS grantable
FROM pg_database d, aclexplode(d.datacl) a LEFT JOIN pg_roles r ON r.oid = a.grantee
WHERE d.datname = %(n)s ORDER BY 1, 2
"""
_SETTINGS = """
SELECT r.rolname AS role, s.setconfig AS config
FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase LEFT JOIN pg_roles r ON r.oid = s.setrole
WHERE d.datname = %(n)s
"""


def capture(conn, dbname: str) -> dict[str, Any]:
    """The database-level properties of ``dbname`` (any connection to the server will do)."""
    rows = dicts(conn, _DB, {"n": dbname})
    if not rows:
        raise LookupError(f"database {dbname} does not exist")
    row = rows[0]
    props = {k: row[k] for k in ("owner", "encoding", "collate", "ctype", "connection_limit", "comment",
                                 "locale_provider", "icu_locale", "tablespace")}
    props["acl"] = None if row["default_acl"] else dicts(conn, _ACL, {"n": dbname})
    settings = []
    for r in dicts(conn, _SETTINGS, {"n": dbname}):
        role, config = r["role"], r["config"]
        for item in config or []:
            name, _, value = item.partition("=")
            settings.append({"role": role, "name": name, "value": value})
    props["settings"] = sorted(settings, key=lambda s: (s["role"] or "", s["name"]))
    return props


def create_statement(dbname: str, props: dict[str, Any] | None) -> sql.Composed:
    """CREATE DATABASE with the recorded encoding and locale (from template0, as pg_dump's
    documentation asks for a restore); a plain CREATE DATABASE without properties."""
    stmt = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname))
    if not props:
        return stmt
    parts = [sql.SQL("TEMPLATE template0"), sql.SQL("ENCODING {}").format(sql.Literal(props["encoding"])),
             sql.SQL("LC_COLLATE {}").format(sql.Literal(props["collate"])),
             sql.SQL("LC_CTYPE {}").format(sql.Literal(props["ctype"]))]
    if props.get("locale_provider") == "i":
        parts += [sql.SQL("LOCALE_PROVIDER icu"), sql.SQL("ICU_LOCALE {}").format(sql.Literal(props["icu_locale"]))]
    if props.get("tablespace"):  # the copy lives where the live database lives
        parts.append(sql.SQL("TABLESPACE {}").format(sql.Identifier(props["tablespace"])))
    return sql.SQL(" ").join([stmt, sql.SQL("WITH"), *parts])


def split_list(value: str) -> list[str]:
    """The elements of a list setting as stored (``"$user", public, "a, b"``): PostgreSQL's
    SplitGUCList (commas between elements, double quotes with "" inside)."""
    out, i, n = [], 0, len(value)
    while i < n:
        while i < n and value[i].isspace():
            i += 1
        if i < n and value[i] == '"':
            i += 1
            buf = []
            while i < n:
                if value[i] == '"':
                    if i + 1 < n and value[i + 1] == '"':
                        buf.append('"')
                        i += 2
                        continue
                    i += 1
                    break
                buf.append(value[i])
                i += 1
            item = "".join(buf)
        else:
            j = i
            while j < n and value[j] != ",":
                j += 1
            item = value[i:j].strip()
            i = j
        while i < n and value[i].isspace():
            i += 1
        if i < n and value[i] == ",":
            i += 1
        out.append(item)
    return out


def _setting_value(name: str, value: str) -> sql.Composable:
    if name.lower() in LIST_QUOTE:
        items = split_list(value)
        return sql.SQL(", ").join(sql.Literal(v) for v in items) if items else sql.Literal("")
    return sql.Literal(value)


def statements(dbname: str, props: dict[str, Any], current_owner: str) -> list[tuple[str | None, sql.Composed]]:
    """(role to become or None, statement) that give ``dbname`` (owned by ``current_owner``)
    the recorded properties. Per-role settings of another role are set as that role (SET
    ROLE: PostgreSQL lets a role change its own settings; the deploy role is a member)."""
    db = sql.Identifier(dbname)
    out: list[tuple[str | None, sql.Composed]] = []
    owner = props.get("owner") or current_owner
    if owner != current_owner:
        out.append((None, sql.SQL("ALTER DATABASE {} OWNER TO {}").format(db, sql.Identifier(owner))))
    if props.get("acl") is not None:
        out.append((None, sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(db)))
        out.append((None, sql.SQL("REVOKE ALL ON DATABASE {} FROM {}").format(db, sql.Identifier(owner))))
        for a in props["acl"]:
            grantee = sql.SQL("PUBLIC") if a["grantee"] == "PUBLIC" else sql.Identifier(a["grantee"])
            out.append((None, sql.SQL("GRANT {} ON DATABASE {} TO {}{}").format(
                sql.SQL(_privilege(a["privilege"])), db, grantee,
                sql.SQL(" WITH GRANT OPTION") if a.get("grantable") else sql.SQL(""))))
    for s in props.get("settings") or []:
        name = sql.Identifier(s["name"])
        value = _setting_value(s["name"], s["value"])
        if s["role"] is None:
            out.append((None, sql.SQL("ALTER DATABASE {} SET {} = {}").format(db, name, value)))
        else:
            out.append((s["role"], sql.SQL("ALTER ROLE {} IN DATABASE {} SET {} = {}").format(
                sql.Identifier(s["role"]), db, name, value)))
    limit = props.get("connection_limit")
    if limit is not None and int(limit) != -1:
        out.append((None, sql.SQL("ALTER DATABASE {} WITH CONNECTION LIMIT {}").format(db, sql.Literal(int(limit)))))
    if props.get("comment") is not None:
        out.append((None, sql.SQL("COMMENT ON DATABASE {} IS {}").format(db, sql.Literal(props["comment"]))))
    return out


def _privilege(p: str) -> str:
    p = str(p).upper()
    if p not in ("CONNECT", "CREATE", "TEMPORARY"):  # the only database privileges
        raise ValueError(f"not a database privilege: {p[:40]!r}")
    return p


def apply(maint: Callable, dbname: str, props: dict[str, Any]) -> int:
    """Give database ``dbname`` the recorded properties; returns how many statements ran.
    ``maint``: opens an autocommit maintenance connection (``access.admin``)."""
    with maint() as c:
        me = scalar(c, "SELECT current_user")
        current_owner = scalar(c, "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %(n)s", {"n": dbname})
        stmts = statements(dbname, props, current_owner)
        for role, st in stmts:
            if role is not None and role != me:
                c.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
                try:
                    c.execute(st)
                finally:
                    c.execute("RESET ROLE")
            else:
                c.execute(st)
    return len(stmts)
