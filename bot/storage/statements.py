"""Prepared statements for the hot path, built once per shape and reused with bound values.

Building a SQLAlchemy statement costs about 80 µs; executing a prepared one with new values about
13 µs (measured here), so the pipeline's units of work reuse statements keyed by their shape. On
SQLite the hot path's statements then run on the driver's cursor with the SQL and type conversions
SQLAlchemy compiled for them (bench/load.py: 437 → 557 messages per second with the inserts, updates
and selects of the pipeline and the outbox on it).
"""

from __future__ import annotations

import sqlite3
from collections import namedtuple
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import Select, Table, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError


@lru_cache(maxsize=256)
def update_by_id(table: Table, keys: tuple[str, ...]) -> Any:
    """``UPDATE table SET k = :k … WHERE id = :_id``."""
    return update(table).where(table.c.id == bindparam("_id")).values({k: bindparam(k) for k in keys})


@lru_cache(maxsize=256)
def insert_row(table: Table, keys: tuple[str, ...], dialect: str, conflict: str | None = None,
               returning: bool = False) -> Any:
    """``INSERT INTO table (keys) VALUES (:keys)``, optionally ``ON CONFLICT (conflict) DO NOTHING RETURNING id``."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(table).values({k: bindparam(k) for k in keys})
    if conflict:
        statement = statement.on_conflict_do_nothing(index_elements=[conflict])
    if returning:
        statement = statement.returning(table.c.id)
    return statement


@lru_cache(maxsize=256)
def select_where(table: Table, columns: tuple[str, ...], key: str) -> Any:
    """``SELECT columns FROM table WHERE key = :key``."""
    return select(*(table.c[c] for c in columns)).where(table.c[key] == bindparam(key))


def run_insert(conn: Any, table: Table, values: dict[str, Any], dialect: str, conflict: str | None = None,
               returning: bool = False) -> Any:
    """Insert a row; with ``returning``, the rows hold the new id (none when a conflict skipped the insert).

    On SQLite the id is the driver's ``lastrowid`` rather than ``RETURNING``: a RETURNING row costs SQLite
    one more step, and the driver gives up the interpreter lock around each step."""
    keys = tuple(sorted(values))
    if not (returning and conn.dialect.name == "sqlite"):
        return execute(conn, insert_row(table, keys, dialect, conflict, returning), values)
    result = execute(conn, insert_row(table, keys, dialect, conflict), values)
    return Rows([(result.lastrowid,)] if result.rowcount == 1 else [], result.rowcount)


def run_update(conn: Any, table: Table, row_id: int, values: dict[str, Any]) -> Any:
    return execute(conn, update_by_id(table, tuple(sorted(values))), {"_id": row_id, **values})


class Rows:
    """The rows of a statement run on the driver, with the small part of SQLAlchemy's ``Result`` the units use."""

    __slots__ = ("rows", "rowcount", "lastrowid")

    def __init__(self, rows: list[Any], rowcount: int, lastrowid: int | None = None) -> None:
        self.rows, self.rowcount, self.lastrowid = rows, rowcount, lastrowid

    def __iter__(self) -> Iterator[Any]:
        return iter(self.rows)

    def all(self) -> list[Any]:
        return self.rows

    def one_or_none(self) -> Any:
        if len(self.rows) > 1:
            raise LookupError("more than one row")
        return self.rows[0] if self.rows else None

    def one(self) -> Any:
        row = self.one_or_none()
        if row is None:
            raise LookupError("no row")
        return row

    def scalar_one_or_none(self) -> Any:
        row = self.one_or_none()
        return None if row is None else row[0]

    def scalar_one(self) -> Any:
        return self.one()[0]

    def scalars(self) -> list[Any]:
        return [row[0] for row in self.rows]


_MISSING = object()


@dataclass(frozen=True)
class _Plan:
    sql: str
    direct: bool  # False: the SQL is finished at execution time (IN lists), so SQLAlchemy runs it
    params: tuple[tuple[str, Any, Any], ...]  # name, converter, fixed value already converted (or _MISSING)
    row: Any  # a namedtuple class, or None: rows as plain tuples
    results: tuple[Any, ...]  # a converter per result column (or None)


@lru_cache(maxsize=256)
def _plan(statement: Any, dialect: Dialect) -> _Plan:
    """SQLite: the statement's SQL as SQLAlchemy compiles it, and per parameter and result column the column
    type's own converter, so running it on the driver stores and reads exactly what SQLAlchemy would."""
    compiled = statement.compile(dialect=dialect)
    params = []
    for name in compiled.positiontup or ():
        bind = compiled.binds[name]
        convert = bind.type.dialect_impl(dialect).bind_processor(dialect)
        fixed = bind.value if not bind.required and bind.callable is None and bind.value is not None else _MISSING
        if fixed is not _MISSING and convert is not None:
            fixed = convert(fixed)
        params.append((name, convert, fixed))
    row, results = None, ()
    if isinstance(statement, Select):
        columns = list(statement.selected_columns)
        results = tuple(c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns)
        row = namedtuple("Row", [c.key for c in columns], rename=True)  # type: ignore[misc]
    direct = not (compiled.post_compile_params or compiled.literal_execute_params)
    return _Plan(compiled.string, direct, tuple(params), row, results)


def execute(conn: Any, statement: Any, values: dict[str, Any] | None = None) -> Any:
    """Run a prepared statement. On SQLite straight on the driver's cursor, inside the unit's transaction
    (SQLAlchemy's per-execution bookkeeping was a third of the writer thread's time); elsewhere, or when a
    column default must be filled in, through SQLAlchemy as usual."""
    values = values or {}
    if conn.dialect.name != "sqlite":
        return conn.execute(statement, values)
    plan = _plan(statement, conn.dialect)
    if not plan.direct:
        return conn.execute(statement, values)
    args = []
    converted: dict[str, Any] = {}  # a value bound several times ("now") is converted once
    for name, convert, fixed in plan.params:
        if name not in values:
            if fixed is _MISSING:
                return conn.execute(statement, values)
            args.append(fixed)
        elif convert is None:
            args.append(values[name])
        else:
            value = converted.get(name, _MISSING)
            if value is _MISSING:
                value = converted[name] = convert(values[name])
            args.append(value)
    cursor = conn.connection.driver_connection.cursor()
    try:
        cursor.execute(plan.sql, args)
        fetched = cursor.fetchall() if cursor.description else []
        rowcount, lastrowid = cursor.rowcount, cursor.lastrowid
    except sqlite3.Error as exc:  # the same exception types as through SQLAlchemy (callers retry DBAPIError)
        raise DBAPIError.instance(plan.sql, args, exc, sqlite3.Error) from exc
    finally:
        cursor.close()
    if plan.row is not None:
        results = plan.results
        fetched = [plan.row(*(f(v) if f else v for f, v in zip(results, raw))) for raw in fetched]
    return Rows(fetched, rowcount, lastrowid)
