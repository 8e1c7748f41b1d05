"""Can the deploy role restore this database, as it is, over the live one? Asked before a
backup (preflight) and before a rollback, so a recovery never fails for a missing right
after the live database was changed.

A restore creates a copy (CREATEDB), gives it the objects under their own owners (``pg_restore``
without ``--no-owner`` runs ``ALTER ... OWNER TO <role>``: the deploy role must be a member of
each), gives it the database's settings (``ALTER ROLE <role> IN DATABASE ... SET``: as that
role, or with CREATEROLE), ends the sessions on the live database (``pg_signal_backend``,
or membership of every role that may connect) and renames it away (its owner). Each missing
right is named with the exact statement that grants it (README, "Deploy role").
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Iterable
from typing import Any

from psycopg import sql

from .catalog import driver_connection
from .pg import column, scalar

# roles owning what pg_dump dumps (not the system schemas, not members of extensions)
_OWNERS = """
WITH objs AS (
  SELECT c.relowner AS owner FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%'
     AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
  UNION SELECT n.nspowner FROM pg_namespace n
   WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'public') AND n.nspname NOT LIKE 'pg\\_%'
     AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_namespace'::regclass AND d.objid = n.oid AND d.deptype = 'e')
  UNION SELECT p.proowner FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
   WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
     AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
  UNION SELECT t.typowner FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
   WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%'
     AND t.typrelid = 0 AND t.typelem = 0
     AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_type'::regclass AND d.objid = t.oid AND d.deptype = 'e')
)
SELECT DISTINCT pg_get_userbyid(owner) FROM objs ORDER BY 1
"""


@dataclass
class Missing:
    what: str  # what the role could not do
    grant: str  # the exact statement that grants it (run by a superuser / the DBA)

    def __str__(self) -> str:
        return f"{self.what}: {self.grant}"


def object_owners(conn) -> list[str]:
    """Roles owning the objects pg_dump dumps from the database ``conn`` is on."""
    return column(conn, _OWNERS)


# objects a non-superuser pg_restore cannot give back to their owner: pg_restore runs ALTER ...
# OWNER TO <owner> right after creating each object, and PostgreSQL then asks that the new owner
# may CREATE in the object's schema; the schema's own grants come back only at the end of the
# restore, so at that moment only the schema's owner (for public: pg_database_owner, i.e. the
# owner of the restore copy, the deploy role) has CREATE there
_STRANDED = """
SELECT n.nspname, c.relname, pg_get_userbyid(c.relowner),
       CASE c.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                      WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_roles o ON o.oid = c.relowner
 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND c.relowner <> (SELECT oid FROM pg_roles WHERE rolname = current_user)
   AND NOT o.rolsuper
   AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%'
   AND NOT (c.relkind = 'S' AND EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
            AND d.objid = c.oid AND d.deptype IN ('a', 'i')))
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
   AND NOT pg_has_role(c.relowner, CASE WHEN n.nspowner = (SELECT oid FROM pg_roles WHERE rolname = 'pg_database_owner')
                                        THEN (SELECT oid FROM pg_roles WHERE rolname = current_user) ELSE n.nspowner END,
                       'USAGE')
 ORDER BY 1, 2
"""


def _q(name: str) -> str:
    return sql.Identifier(name).as_string()


def missing_rights(conn, dbname: str, *, owners: Iterable[str] = (),
                   props: dict[str, Any] | None = None) -> list[Missing]:
    """What the connected role lacks to restore ``dbname`` as it is (empty: nothing).
    ``conn``: psycopg's (a SQLAlchemy one: its driver connection)."""
    conn = driver_connection(conn)
    me, su, createdb, createrole, version = conn.execute((
        "SELECT current_user, rolsuper, rolcreatedb, rolcreaterole, current_setting('server_version_num')::int"
        " FROM pg_roles WHERE rolname = current_user")).fetchone()
    if su:
        return []
    member = "SET" if version >= 160000 else "MEMBER"  # what ALTER ... OWNER TO and SET ROLE ask of a member
    out: list[Missing] = []
    if not createdb:
        out.append(Missing("create databases (the restore copy)", f"ALTER ROLE {_q(me)} CREATEDB;"))
    row = conn.execute("SELECT pg_has_role(current_user, datdba, 'USAGE'), pg_get_userbyid(datdba)"
                       " FROM pg_database WHERE datname = %(d)s", {"d": dbname}).fetchone()
    if row is None:
        return out
    if not row[0]:
        out.append(Missing(f"own database {dbname} (to rename it away at the swap; it is owned by {row[1]})",
                           f"ALTER DATABASE {_q(dbname)} OWNER TO {_q(me)};"))
    space = conn.execute(
        "SELECT t.spcname, has_tablespace_privilege(t.oid, 'CREATE') FROM pg_database d"
        " JOIN pg_tablespace t ON t.oid = d.dattablespace WHERE d.datname = %(d)s AND t.spcname <> 'pg_default'",
        {"d": dbname}).fetchone()
    if space is not None and not space[1]:
        out.append(Missing(f"create the restore copy in tablespace {space[0]}, where {dbname} lives",
                           f"GRANT CREATE ON TABLESPACE {_q(space[0])} TO {_q(me)};"))
    signal = scalar(conn, "SELECT pg_has_role(current_user, 'pg_signal_backend', 'USAGE')")
    if not signal:
        # roles that may hold sessions on the database: CONNECT grantees, and whoever is connected
        rows = conn.execute(
            "SELECT coalesce(r.rolname, 'PUBLIC'), coalesce(r.rolsuper, false),"
            "       coalesce(pg_has_role(current_user, r.oid, 'USAGE'), false)"
            "  FROM pg_database d, aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a"
            "  LEFT JOIN pg_roles r ON r.oid = a.grantee"
            " WHERE d.datname = %(d)s AND a.privilege_type = 'CONNECT'"
            " UNION SELECT r.rolname, r.rolsuper, pg_has_role(current_user, r.oid, 'USAGE')"
            "  FROM pg_stat_activity s JOIN pg_roles r ON r.oid = s.usesysid WHERE s.datname = %(d)s", {"d": dbname}).fetchall()
        public = any(name == "PUBLIC" for name, _, _ in rows)
        others = sorted({name for name, sup, mine in rows if name != "PUBLIC" and not sup and not mine and name != me})
        if public:
            out.append(Missing(f"end other roles' sessions on {dbname} at the swap (PUBLIC may connect to it)",
                               f"GRANT pg_signal_backend TO {_q(me)};"))
        elif others:
            out.append(Missing(f"end the sessions of {', '.join(others)} on {dbname} at the swap",
                               f"GRANT pg_signal_backend TO {_q(me)};  -- or: "
                               + " ".join(f"GRANT {_q(r)} TO {_q(me)};" for r in others)))
    need: dict[str, str] = {}
    for r in owners:
        if r and r != me:
            need.setdefault(r, f"restore the objects {r} owns under {r} (pg_restore's ALTER ... OWNER TO)")
    if props and not createrole:
        for s in props.get("settings") or []:
            if s.get("role") and s["role"] != me:
                need.setdefault(s["role"], f"restore {s['role']}'s settings in {dbname} (ALTER ROLE ... IN DATABASE ... SET)")
    if props and props.get("owner") and props["owner"] != me:
        need.setdefault(props["owner"], f"give the restored database its owner {props['owner']}")
    stranded = conn.execute(_STRANDED).fetchall() if owners else []
    if stranded:
        names = ", ".join(f"{n}.{r} ({o})" for n, r, o, _ in stranded[:5]) + (" ..." if len(stranded) > 5 else "")
        out.append(Missing(
            f"restore {len(stranded)} object(s) under an owner that does not own their schema: {names} "
            "(pg_restore gives each object its owner before the schema's grants are back, so only a superuser "
            "can; move them to a schema their owner owns, or give them to the deploy role)",
            " ".join(f"ALTER {k} {_q(n)}.{_q(r)} OWNER TO {_q(me)};" for n, r, _, k in stranded[:5])))
    for role, what in need.items():
        r = conn.execute("SELECT pg_has_role(current_user, oid, %(m)s) FROM pg_roles WHERE rolname = %(r)s",
                         {"r": role, "m": member}).fetchone()
        if r is None:
            out.append(Missing(f"{what}: role {role} does not exist on this server", f"CREATE ROLE {_q(role)};"))
        elif not r[0]:
            out.append(Missing(what, f"GRANT {_q(role)} TO {_q(me)};"))
    return out


def data_location(conn, dbname: str) -> str | None:
    """Where a copy of ``dbname`` would be written on the DB host (its tablespace's folder,
    else the data directory); None when the role may not read it (pg_read_all_settings)."""
    loc = scalar(conn, "SELECT pg_tablespace_location(dattablespace) FROM pg_database WHERE datname = %(d)s",
                 {"d": dbname})
    if loc:
        return loc
    readable = scalar(conn, "SELECT rolsuper OR pg_has_role(current_user, 'pg_read_all_settings', 'USAGE')"
                            " FROM pg_roles WHERE rolname = current_user")
    if not readable:
        return None
    return scalar(conn, "SELECT current_setting('data_directory')")


def read_settings_grant(conn) -> Missing:
    me = scalar(conn, "SELECT current_user")
    return Missing("read where the data directory is (to check it has room for the restore copy)",
                   f"GRANT pg_read_all_settings TO {_q(me)};")


def refuse_unless_recoverable(conn, dbname: str, *, owners: Iterable[str], props: dict | None,
                              size: int, target, factor: float = 1.2, when: str = "before the backup") -> str:
    """Raise GateRefused (exit 2, nothing changed) naming every missing right with its GRANT,
    or when the DB host's data directory has no room for a second copy of ``dbname``
    (``size`` bytes); ``target`` is the DB host. Returns a one-line summary when all is well."""
    from ..errors import GateRefused

    missing = missing_rights(conn, dbname, owners=owners, props=props)
    where = data_location(conn, dbname)
    if where is None:
        missing.append(read_settings_grant(conn))
    if missing:
        me = scalar(conn, "SELECT current_user")
        raise GateRefused(
            f"role {me} could not restore {dbname} as it is, so a failed deploy could not be undone; "
            f"refused {when}, nothing changed. Missing: " + "; ".join(str(m) for m in missing),
            "run the statement(s) above as a superuser (README, \"Deploy role\", lists every right), then try again",
        )
    free = target.free_bytes(where)
    if free < size * factor:
        raise GateRefused(
            f"not enough room for a restore copy of {dbname} in {where} on DB host {target.name}: "
            f"{free // 2**20} MiB free, the database is {size // 2**20} MiB (a restore writes a second copy "
            f"before the swap); refused {when}, nothing changed",
            "free space on the DB host's data volume",
        )
    return f"{free // 2**20} MiB free for a restore copy"
