"""Prepared statements for the hot path, built once per shape and reused with bound values.

Building a SQLAlchemy statement costs about 80 µs; executing a prepared one with new values about
13 µs (measured here), so the pipeline's units of work reuse statements keyed by their shape. On
SQLite the inserts and updates then run on the driver's cursor with the SQL and type conversions
SQLAlchemy compiled for them (bench/load.py: about 10% more messages per second).
"""

from __future__ import annotations

import sqlite3
from functools import lru_cache
from typing import Any

from sqlalchemy import Table, bindparam, select, update
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
    return _execute(conn, insert_row(table, tuple(sorted(values)), dialect, conflict, returning), values)


def run_update(conn: Any, table: Table, row_id: int, values: dict[str, Any]) -> Any:
    return _execute(conn, update_by_id(table, tuple(sorted(values))), {"_id": row_id, **values})


class _Done:
    """What a raw execution returns: the first row's first value (RETURNING id) and the rows changed."""

    __slots__ = ("value", "rowcount")

    def __init__(self, value: Any, rowcount: int) -> None:
        self.value, self.rowcount = value, rowcount

    def scalar_one(self) -> Any:
        if self.value is None:
            raise LookupError("no row returned")
        return self.value

    def scalar_one_or_none(self) -> Any:
        return self.value


@lru_cache(maxsize=256)
def _raw(statement: Any, dialect: Dialect) -> tuple[str, tuple[tuple[str, Any], ...]]:
    """SQLite: the statement's SQL and, per positional parameter, its name and the column type's converter
    (the same SQL and conversions SQLAlchemy itself would use)."""
    compiled = statement.compile(dialect=dialect)
    binds = compiled.binds
    return compiled.string, tuple((name, binds[name].type.dialect_impl(dialect).bind_processor(dialect))
                                  for name in compiled.positiontup or ())


def _execute(conn: Any, statement: Any, values: dict[str, Any]) -> Any:
    """Run a prepared statement; on SQLite straight on the driver's cursor, inside the same transaction
    (SQLAlchemy's per-execution bookkeeping was a third of the writer thread's time). Statements that
    need a column default filled in go through SQLAlchemy as before."""
    if conn.dialect.name != "sqlite":
        return conn.execute(statement, values)
    sql, params = _raw(statement, conn.dialect)
    try:
        args = [convert(values[name]) if convert else values[name] for name, convert in params]
    except KeyError:
        return conn.execute(statement, values)
    cursor = conn.connection.driver_connection.cursor()
    try:
        cursor.execute(sql, args)
        row = cursor.fetchone() if cursor.description else None
        return _Done(row[0] if row else None, cursor.rowcount)
    except sqlite3.Error as exc:  # the same exception types as through SQLAlchemy (callers retry DBAPIError)
        raise DBAPIError.instance(sql, args, exc, sqlite3.Error) from exc
    finally:
        cursor.close()
