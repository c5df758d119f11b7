"""The SQLite files the project opens itself: Optuna's study storage and MLflow's local store.

Both are switched to WAL journal mode before their library opens them: readers (a dashboard,
the MLflow UI, ``report``) do not block the writer, several worker processes of one machine
share the file, and a commit costs one sync of the log instead of the rollback journal's
several (an MLflow call on the local store: ~4 ms less). The mode is a property of the file,
so it is set once, with ``sqlite3``. WAL needs a local file system: on a network share use
PostgreSQL (``storage=postgres``) and a tracking server, as for several machines anyway.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

LOCK_TIMEOUT_S = 60  # how long a connection waits for a lock before "database is locked"


def use_wal(database: str | Path) -> None:
    """Create the folder of a database file and switch the file (created if missing) to WAL
    mode; nothing for an in-memory database or a ``file:`` URI (SQLite opens those itself).

    Raises:
        OSError, sqlite3.Error: The folder or the file cannot be created or opened.
    """
    name = str(database)
    if not name or name == ":memory:" or name.startswith("file:"):
        return
    path = Path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=LOCK_TIMEOUT_S)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
    finally:
        conn.close()
