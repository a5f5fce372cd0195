"""Versioned schema migrations: numbered `migrations/NNNN_name.sql` files, applied in order.

Each file runs once, inside one transaction, and is recorded in `schema_migrations`. A
transaction-scoped advisory lock serialises concurrent starters (several Serve replicas, the
CLI), so running the migrations twice, or from two processes at once, is harmless.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import psycopg

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
MIGRATION_LOCK = 0x7477_6F74  # "twot": an arbitrary, project-wide advisory lock key
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
