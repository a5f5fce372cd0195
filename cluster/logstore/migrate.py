"""Versioned schema migrations: numbered `migrations/NNNN_name.sql` files, applied in order.

Each file runs once, inside one transaction, and is recorded in `schema_migrations`. A
transaction-scoped advisory lock serialises concurrent starters (several Serve replicas, the
CLI), so running the migrations twice, or from two processes at once, is harmless.

The log writer and the log reader both get the schema through `Schema`, and agree on
`FEEDBACK_LOCK` here, next to the tables it guards.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import psycopg

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
MIGRATION_LOCK = 0x7477_6F74  # "twot": an arbitrary, project-wide advisory lock key
# Feedback ids come from a sequence, and two transactions can commit out of id order. Feedback
# writers hold this lock shared for their transaction and `LogReader.feedback_since` takes it
# exclusively for its read, so a later read never finds a new row below its watermark.
FEEDBACK_LOCK = 0x7477_6662
FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def discover(folder: Path = MIGRATIONS_DIR) -> list[Migration]:
    found = []
    for path in sorted(folder.iterdir()):
        match = FILE_RE.match(path.name)
        if match:
            found.append(Migration(int(match[1]), match[2], path.read_text()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration numbers in {folder}")
    return found


def apply_migrations(conn: psycopg.Connection, folder: Path = MIGRATIONS_DIR) -> list[int]:
    """Apply the pending migrations; returns the versions applied by this call."""
    applied_now = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        for migration in discover(folder):
            if migration.version in done:
                continue
            conn.execute(migration.sql.encode())  # no parameters: several statements allowed
            conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                (migration.version, migration.name),
            )
            applied_now.append(migration.version)
    return applied_now


class Schema:
    """Applies the migrations on its owner's first working connection, then never again.

    Writer and reader may both start while PostgreSQL is down, so neither can count on doing
    it in ``__init__``: each calls ``ensure`` before it uses a connection.
    """

    def __init__(self) -> None:
        self.ready = False

    def ensure(self, conn: psycopg.Connection) -> None:
        if not self.ready:
            apply_migrations(conn)
            self.ready = True
