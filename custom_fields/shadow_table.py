"""Type changes by copy and swap on PostgreSQL, the way pg-osc does them: the rows are copied, converted,
into a shadow table (the live one's columns and constraints, the field's new column in place of its old
one) in short transactions of a few thousand ids, with no index to keep up; a trigger on the live table
logs the id of every row written meanwhile. The shadow's indexes are then built as plain sorted builds
(nobody else uses it), the logged rows copied again until few are left (``catch_up``), and one
transaction of milliseconds swaps the tables (``swap``): under its lock the last logged rows are copied,
the live table is dropped and the shadow takes its name, indexes, sequence, grants and the foreign keys
from and to it (added NOT VALID there, validated after, ``validate``).

Each row is written once, as a rewrite (``ALTER ... TYPE``) writes it, and each index built once; an
UPDATE of every row in place writes a second version of it and an entry in each of the table's indexes.
Tables this cannot copy faithfully (identity columns, views, rules, policies, triggers, inheritance, a
publication) are left to the in-place conversion (``online``): ``prepare`` returns None for them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from custom_fields import conversion, ddl
from custom_fields.conversion import Conversion
from custom_fields.short_locks import (
    DEADLOCK,
    LOCK_NOT_AVAILABLE,
    lock_timeout,
    sqlstate,
    with_short_locks,
)
from custom_fields.types import REGISTRY

Progress = Callable[[int, int], None]


class TableChanged(Exception):  # noqa: N818 (what the admin is told)
    """The live table's columns, indexes or constraints changed while the rows were copied."""


@dataclass(frozen=True)
class ShadowIndex:
    name: str  # on the live table, and the shadow's once swapped
    temporary: str  # the shadow's until the swap
    definition: str  # ``USING ...`` of ``pg_get_indexdef``
    unique: bool
    constraint: str | None  # a UNIQUE constraint the index backs


@dataclass(frozen=True)
class ForeignKey:
    table: str  # the table the constraint is on
    name: str
    definition: str  # ``pg_get_constraintdef``


@dataclass(frozen=True)
class Shadow:
    live: str
    shadow: str
    log: str  # the ids written meanwhile
    trigger: str
    old_column: str
    new_column: str
    columns: tuple[str, ...]  # copied as they are: the live table's but the old and generated columns
    primary_key: str
    indexes: tuple[ShadowIndex, ...]
    outgoing: tuple[ForeignKey, ...]
    incoming: tuple[ForeignKey, ...]
    sequences: tuple[tuple[str, str], ...]  # (sequence, column) owned by the live table
    grants: tuple[tuple[str, str], ...]  # (privilege, grantee)
    fingerprint: tuple[str, ...]


def shadow_name(field_id: int) -> str:
    return ddl.check_identifier(f"tcvt_{field_id}")


def log_name(field_id: int) -> str:
    return ddl.check_identifier(f"tcvl_{field_id}")


def fingerprint(conn: Connection, table_name: str) -> tuple[str, ...]:
    """The live table's columns (with types), indexes and constraints (its own and those referring to
    it): what the swap needs unchanged since ``prepare``."""
    rows = conn.execute(
        text(
            "SELECT 'c:' || attname || ':' || format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = to_regclass(:t) AND attnum > 0 AND NOT attisdropped "
            "UNION ALL SELECT 'i:' || indexrelid::regclass::text FROM pg_index "
            "WHERE indrelid = to_regclass(:t) "
            "UNION ALL SELECT 'k:' || conname FROM pg_constraint "
            "WHERE conrelid = to_regclass(:t) OR confrelid = to_regclass(:t)"
        ),
        {"t": table_name},
    )
    return tuple(sorted(r[0] for r in rows))


def _copyable(conn: Connection, table_name: str) -> bool:
    """Nothing depends on the table that the swap would not carry over."""
    blocked = conn.execute(
        text(
            "SELECT c.relkind <> 'r' OR c.relhasrules OR c.relrowsecurity OR c.relispartition "
            " OR EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = c.oid OR inhparent = c.oid)"
            " OR EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = c.oid AND NOT tgisinternal)"
            " OR EXISTS (SELECT 1 FROM pg_policy WHERE polrelid = c.oid)"
            " OR EXISTS (SELECT 1 FROM pg_publication_rel WHERE prrelid = c.oid)"
            " OR EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = c.oid AND attidentity <> '')"
            " OR EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = c.oid AND contype = 'x')"
            " OR EXISTS (SELECT 1 FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid "
            "            WHERE d.refobjid = c.oid AND r.ev_class <> c.oid)"
            " FROM pg_class c WHERE c.oid = to_regclass(:t)"
        ),
        {"t": table_name},
    ).scalar()
    return blocked is False


def prepare(conn: Connection, plan: Conversion) -> Shadow | None:
    """What copying the table for ``plan`` takes, read from the catalog; None when the table cannot be
    copied faithfully (the in-place conversion serves it)."""
    live, old, new = plan.table.name, plan.old.column_name, plan.new.column_name
    if not _copyable(conn, live):
        return None
    columns = [
        name
        for (name,) in conn.execute(
            text(
                "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(:t) AND attnum > 0 "
                "AND NOT attisdropped AND attgenerated = '' ORDER BY attnum"
            ),
            {"t": live},
        )
    ]
    if "id" not in columns or any(not ddl.IDENTIFIER_RE.match(c) for c in columns):
        return None
    field_id = plan.new.id
    shadow = shadow_name(field_id)
    primary_key = conn.execute(
        text(
            "SELECT conname FROM pg_constraint WHERE conrelid = to_regclass(:t) AND contype = 'p' "
            "AND conkey = ARRAY[(SELECT attnum FROM pg_attribute "
            "                    WHERE attrelid = conrelid AND attname = 'id')]"
        ),
        {"t": live},
    ).scalar()
    if primary_key is None:
        return None  # the copy matches rows by ``id`` alone
    indexes: list[ShadowIndex] = []
    found = conn.execute(
        text(
            "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid), i.indisunique, "
            " (SELECT conname FROM pg_constraint WHERE conindid = i.indexrelid AND contype = 'u'), "
            " EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = i.indrelid AND a.attname = :old "
            "         AND (a.attnum = ANY(i.indkey) "
            "              OR substring(pg_get_indexdef(i.indexrelid) FROM ' USING .*$') "
            "                 ~ ('\\m' || :old || '\\M')))"
            " FROM pg_index i WHERE i.indrelid = to_regclass(:t) AND NOT i.indisprimary ORDER BY 1"
        ),
        {"t": live, "old": old},
    ).all()
    for number, (name, definition, unique, constraint, on_old) in enumerate(found):
        if on_old:
            continue  # the old column's indexes go with it; the new one's are the field's (``new_indexes``)
        using = definition[definition.index(" USING ") + 1 :]
        indexes.append(
            ShadowIndex(name, ddl.check_identifier(f"tcvi_{field_id}_{number}"), using, unique, constraint)
        )
    outgoing = [
        ForeignKey(live, name, definition)
        for name, definition in conn.execute(
            text(
                "SELECT conname, pg_get_constraintdef(c.oid) FROM pg_constraint c "
                "WHERE conrelid = to_regclass(:t) AND contype = 'f' AND NOT EXISTS ("
                " SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.conrelid AND a.attname = :old "
                " AND a.attnum = ANY(c.conkey))"
            ),
            {"t": live, "old": old},
        )
    ]
    target = REGISTRY[plan.new.type].target_table(plan.new)
    if target:
        outgoing.append(
            ForeignKey(
                live,
                ddl.check_identifier(f"{live}_{new}_fkey"[:63]),
                f'FOREIGN KEY ("{new}") REFERENCES "{ddl.check_identifier(target)}"(id) ON DELETE SET NULL',
            )
        )
    incoming = [
        ForeignKey(table, name, definition)
        for table, name, definition in conn.execute(
            text(
                "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE confrelid = to_regclass(:t) AND contype = 'f' AND conrelid <> confrelid"
            ),
            {"t": live},
        )
    ]
    sequences = tuple(
        conn.execute(
            text(
                "SELECT s.oid::regclass::text, a.attname FROM pg_depend d "
                "JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' "
                "JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid "
                "WHERE d.refobjid = to_regclass(:t) AND d.deptype = 'a'"
            ),
            {"t": live},
        ).all()
    )
    grants = tuple(
        conn.execute(
            text(
                "SELECT a.privilege_type, CASE WHEN a.grantee = 0 THEN 'PUBLIC' "
                " ELSE quote_ident(a.grantee::regrole::text) END "
                "FROM pg_class c, aclexplode(c.relacl) a "
                "WHERE c.oid = to_regclass(:t) AND a.grantee <> c.relowner"
            ),
            {"t": live},
        ).all()
    )
    names = [
        primary_key or "", *(i.name for i in indexes), *(i.constraint for i in indexes if i.constraint),
        *(fk.name for fk in [*outgoing, *incoming]), *(fk.table for fk in incoming),
        *(sequence for sequence, _column in sequences),
    ]  # fmt: skip
    if not all(ddl.IDENTIFIER_RE.match(name) for name in names):
        return None  # a name this module would have to quote as it is: left to the in-place conversion
    return Shadow(
        live=live, shadow=shadow, log=log_name(field_id),
        trigger=ddl.conversion_trigger_name(live, old), old_column=old, new_column=new,
        columns=tuple(c for c in columns if c != old), primary_key=primary_key,
        indexes=tuple(indexes), outgoing=tuple(outgoing), incoming=tuple(incoming),
        sequences=sequences, grants=grants, fingerprint=fingerprint(conn, live),
    )  # fmt: skip


def _q(name: str) -> str:
    return f'"{ddl.check_identifier(name)}"'


def _converted(plan: Conversion, source: str) -> str:
    """The new value as SQL over ``source`` (the old column, qualified): NULL where SQL converts nothing
    (the trigger refuses such values; the check found none)."""
    covers, value = conversion.sql_over(plan, source)
    return f"CASE WHEN {covers} THEN {value} END" if covers and value else "NULL"


def install(conn: Connection, shadow: Shadow, plan: Conversion) -> None:
    """The shadow table (empty, without indexes: the copy writes it as a rewrite would), the log of the
    ids written meanwhile, and the trigger on the live table that logs each write (and refuses a value SQL
    cannot convert), in the caller's transaction (``short_locks.with_short_locks``)."""
    live, target = _q(shadow.live), REGISTRY[plan.new.type]
    conn.execute(
        text(
            f"CREATE TABLE {_q(shadow.shadow)} (LIKE {live} INCLUDING DEFAULTS INCLUDING CONSTRAINTS "
            "INCLUDING STORAGE INCLUDING COMMENTS INCLUDING GENERATED)"
        )
    )
    conn.execute(text(f"ALTER TABLE {_q(shadow.shadow)} DROP COLUMN {_q(shadow.old_column)}"))
    ddl.add_column(conn, shadow.shadow, shadow.new_column, target.column_type(plan.new))
    conn.execute(text(f"CREATE TABLE {_q(shadow.log)} (n bigserial PRIMARY KEY, id bigint NOT NULL)"))
    old = f"NEW.{_q(shadow.old_column)}"
    covers, _value = conversion.sql_over(plan, old)
    refuse = f"{old} IS NOT NULL{f' AND NOT ({covers})' if covers else ''}"
    function = shadow.trigger
    # The driver's own cursor: the SQL carries its literals (a label may hold ":x" or "%").
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    cursor.execute(
        f"CREATE OR REPLACE FUNCTION {_q(function)}() RETURNS trigger LANGUAGE plpgsql AS $tabula$ BEGIN "  # noqa: S608
        f"IF TG_OP = 'DELETE' THEN INSERT INTO {_q(shadow.log)} (id) VALUES (OLD.id); RETURN NULL; END IF; "
        f"IF {refuse} THEN RAISE EXCEPTION USING ERRCODE = 'check_violation', "
        f"MESSAGE = '{ddl.CONVERTING_MESSAGE}'; END IF; "
        f"INSERT INTO {_q(shadow.log)} (id) VALUES (NEW.id); RETURN NULL; END $tabula$"
    )
    conn.execute(
        text(
            f"CREATE TRIGGER {_q(function)} AFTER INSERT OR UPDATE OR DELETE ON {live} "
            f"FOR EACH ROW EXECUTE FUNCTION {_q(function)}()"
        )
    )


def remove(conn: Connection, shadow: Shadow) -> None:
    """Undo ``install`` (and whatever indexes the shadow got): the live table is as it was."""
    drop_leftovers(conn, shadow.live, shadow.trigger, shadow.shadow, shadow.log)


def drop_leftovers(conn: Connection, live: str, trigger: str, shadow: str, log: str) -> None:
    conn.execute(text(f"DROP TRIGGER IF EXISTS {_q(trigger)} ON {_q(live)}"))
    conn.execute(text(f"DROP FUNCTION IF EXISTS {_q(trigger)}()"))
    conn.execute(text(f"DROP TABLE IF EXISTS {_q(shadow)}"))
    conn.execute(text(f"DROP TABLE IF EXISTS {_q(log)}"))


def _copy_sql(shadow: Shadow, plan: Conversion, where: str) -> str:
    """``INSERT INTO <shadow> SELECT <the live rows, converted> WHERE <where>`` (over ``s``, the live
    table), with literal values: sent without parameters (see ``install``)."""
    names = ", ".join(_q(c) for c in [*shadow.columns, shadow.new_column])
    picked = ", ".join(
        [*(f"s.{_q(c)}" for c in shadow.columns), _converted(plan, f"s.{_q(shadow.old_column)}")]
    )
    return f"INSERT INTO {_q(shadow.shadow)} ({names}) SELECT {picked} FROM {_q(shadow.live)} s WHERE {where}"  # noqa: S608


def copy(
    engine: Engine, shadow: Shadow, plan: Conversion, progress: Progress | None, batch: int,
) -> None:  # fmt: skip
    """Every row into the shadow, converted, ``batch`` ids per short transaction. ``progress(rows done,
    rows in all)`` after each batch (it may raise to stop). Rows written meanwhile are in the log
    (``catch_up``)."""
    with engine.connect() as conn:
        low, high = conversion.id_range(conn, shadow.live)
    total = max(high - low + 1, 0)
    for start in range(low, high + 1, batch):
        end = start + batch - 1
        _run(engine, [_copy_sql(shadow, plan, f"s.id BETWEEN {int(start)} AND {int(end)}")])
        if progress is not None:
            progress(min(end + 1, high + 1) - low, total)


def _run(engine: Engine, statements: list[str], isolation: str | None = None) -> None:
    """The statements in one short transaction, tried again after a deadlock or a lock timeout."""

    def step(conn: Connection) -> None:
        # Nothing reads the shadow before the swap, whose commit waits for all WAL written before.
        conn.execute(text("SET LOCAL synchronous_commit = off"))
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        for statement in statements:
            cursor.execute(statement)

    with_short_locks(engine, step, isolation=isolation, again=_lock_timeout_or_deadlock)


def _lock_timeout_or_deadlock(exc: BaseException) -> bool:
    """Failures of one short transaction that are tried again: a lock timeout, or a deadlock with a
    writer's trigger."""
    return sqlstate(exc) in (LOCK_NOT_AVAILABLE, DEADLOCK)


def build_indexes(engine: Engine, shadow: Shadow) -> None:
    """The shadow's primary key and the live table's other indexes (under temporary names), built as
    plain sorted builds (nobody else uses the shadow: the trigger only logs); then its statistics. A
    failure raises ``IndexBuildFailed``."""
    statements = [
        f"ALTER TABLE {_q(shadow.shadow)} ADD CONSTRAINT {_q(shadow.shadow + '_pkey')} PRIMARY KEY (id)",
        *(
            f"CREATE {'UNIQUE ' if index.unique else ''}INDEX {_q(index.temporary)} "
            f"ON {_q(shadow.shadow)} {index.definition}"
            for index in shadow.indexes
        ),
    ]
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for statement in statements:
            try:
                conn.execute(text(statement))
            except DBAPIError as exc:
                raise ddl.IndexBuildFailed(str(exc.orig).splitlines()[0][:200]) from exc
        conn.execute(text(f"ANALYZE {_q(shadow.shadow)}"))


def _catch_up_sql(shadow: Shadow, plan: Conversion) -> list[str]:
    """The logged rows as they are now: taken out of the shadow, copied again (a deleted one is gone
    from the live table), and the log entries seen removed."""
    logged = f"SELECT id FROM {_q(shadow.log)}"  # noqa: S608
    return [
        f"DELETE FROM {_q(shadow.shadow)} WHERE id IN ({logged})",  # noqa: S608
        _copy_sql(shadow, plan, f"s.id IN ({logged})"),
        f"DELETE FROM {_q(shadow.log)}",  # noqa: S608
    ]


def converted_count(engine: Engine, shadow: Shadow) -> int:
    """How many records of the shadow have a value in the new column."""
    with engine.connect() as conn:
        count = conn.execute(text(f"SELECT count({_q(shadow.new_column)}) FROM {_q(shadow.shadow)}"))  # noqa: S608
        return int(count.scalar() or 0)


def catch_up(engine: Engine, shadow: Shadow, plan: Conversion, enough: int = 1000, rounds: int = 20) -> None:
    """Apply the log until fewer than ``enough`` entries remain (the swap applies those under its lock).
    Each round is one REPEATABLE READ transaction: the log entries it sees and the live rows it copies are
    of one moment, and the entries written after it are left for the next."""
    for _round in range(rounds):
        with engine.connect() as conn:
            waiting = conn.execute(text(f"SELECT count(*) FROM {_q(shadow.log)}")).scalar() or 0  # noqa: S608
        if waiting == 0:
            return
        _run(engine, _catch_up_sql(shadow, plan), isolation="REPEATABLE READ")
        if waiting < enough:
            return


def swap(conn: Connection, shadow: Shadow, plan: Conversion) -> None:
    """In the caller's transaction (which also makes the field read its new column): the shadow becomes
    the table (the new column's indexes, built on it under their final names, come along). Waits at most
    ``short_locks.STEP_LOCK_TIMEOUT`` for each lock (the caller tries again); ``TableChanged`` if the live
    table changed shape since ``prepare``."""
    live, copy_ = _q(shadow.live), _q(shadow.shadow)
    lock_timeout(conn)
    conn.execute(text(f"LOCK TABLE {live} IN ACCESS EXCLUSIVE MODE"))
    if fingerprint(conn, shadow.live) != shadow.fingerprint:
        raise TableChanged()
    # Under the lock no write is under way: what the log holds now is all that is left.
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    for statement in _catch_up_sql(shadow, plan):
        cursor.execute(statement)
    for fk in shadow.incoming:
        conn.execute(text(f"ALTER TABLE {_q(fk.table)} DROP CONSTRAINT {_q(fk.name)}"))
    for sequence, column_name in shadow.sequences:
        conn.execute(text(f"ALTER SEQUENCE {sequence} OWNED BY {copy_}.{_q(column_name)}"))
    conn.execute(text(f"DROP TRIGGER {_q(shadow.trigger)} ON {live}"))
    conn.execute(text(f"DROP FUNCTION {_q(shadow.trigger)}()"))
    conn.execute(text(f"DROP TABLE {live}"))
    conn.execute(text(f"DROP TABLE {_q(shadow.log)}"))
    conn.execute(text(f"ALTER TABLE {copy_} RENAME TO {live}"))
    conn.execute(
        text(
            f"ALTER TABLE {live} RENAME CONSTRAINT {_q(shadow.shadow + '_pkey')} TO {_q(shadow.primary_key)}"
        )
    )
    for index in shadow.indexes:
        if index.constraint:
            conn.execute(
                text(
                    f"ALTER TABLE {live} ADD CONSTRAINT {_q(index.constraint)} "
                    f"UNIQUE USING INDEX {_q(index.temporary)}"
                )
            )
            if index.constraint != index.name:
                conn.execute(text(f"ALTER INDEX {_q(index.constraint)} RENAME TO {_q(index.name)}"))
        else:
            conn.execute(text(f"ALTER INDEX {_q(index.temporary)} RENAME TO {_q(index.name)}"))
    for fk in (*shadow.outgoing, *shadow.incoming):
        conn.execute(
            text(f"ALTER TABLE {_q(fk.table)} ADD CONSTRAINT {_q(fk.name)} {fk.definition} NOT VALID")
        )
    for privilege, grantee in shadow.grants:
        conn.execute(text(f"GRANT {privilege} ON {live} TO {grantee}"))


def validate(engine: Engine, shadow: Shadow) -> list[str]:
    """After the swap: the foreign keys added NOT VALID are checked (reads and writes go on meanwhile).
    Returns those that could not be (they stay enforced for every write, only unchecked for the rows the
    copy brought, which the old table's constraint had checked)."""
    left: list[str] = []
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f"SET lock_timeout = '{ddl.INDEX_BUILD_LOCK_TIMEOUT}'"))
        for fk in (*shadow.outgoing, *shadow.incoming):
            try:
                conn.execute(text(f"ALTER TABLE {_q(fk.table)} VALIDATE CONSTRAINT {_q(fk.name)}"))
            except DBAPIError:
                left.append(fk.name)
        conn.execute(text("RESET lock_timeout"))
    return left
