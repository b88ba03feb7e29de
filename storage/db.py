"""Engine, sessions and migrations. SQLite by default, PostgreSQL for several replicas."""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"
WRITE_WAIT_S = 30  # on SQLite, the longest a writer waits for its turn in this process, and then for the file's lock


def make_engine(url: str) -> Engine:
    """An engine tuned for the backend: WAL and immediate transactions on SQLite."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": WRITE_WAIT_S})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record):  # noqa: ANN001
            dbapi_conn.isolation_level = None  # let us issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            if ":memory:" not in url and url not in ("sqlite://", "sqlite:///"):
                cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={WRITE_WAIT_S * 1000}")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn):  # noqa: ANN001
            # Writers queue on the lock up front instead of failing when a read upgrades to a write;
            # read-only units of work (`Database.reading`) take no lock and run beside the writer (WAL).
            conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get("readonly") else "BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


class Database:
    """One engine plus the sessions every service uses; tells listeners when outbox rows commit."""

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        self._on_outbox_commit: list[Callable[[], None]] = []
        # SQLite has one writer at a time. Writers of this process queue here rather than in SQLite's busy
        # handler, which sleeps (up to 100 ms a try) and leaves the lock idle while they sleep.
        self._writers = threading.RLock() if url.startswith("sqlite") else None

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    def on_outbox_commit(self, callback: Callable[[], None]) -> None:
        """Call `callback` after any commit that added outbox rows (wakes the sender)."""
        self._on_outbox_commit.append(callback)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: commits on success, rolls back on error."""
        with self._writer_turn(), Session(self.engine, expire_on_commit=False) as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise
            woken = session.info.pop("outbox_added", False)
        if woken:
            for callback in self._on_outbox_commit:
                callback()

    @contextmanager
    def _writer_turn(self) -> Iterator[None]:
        """On SQLite, this process's writers one at a time; a writer that waits longer than WRITE_WAIT_S fails as if
        SQLite were locked (another process holding the lock must not queue this process's writers forever)."""
        if self._writers is None:
            yield
            return
        if not self._writers.acquire(timeout=WRITE_WAIT_S):
            waited = sqlite3.OperationalError(f"database is locked: no turn to write within {WRITE_WAIT_S} s")
            raise OperationalError("BEGIN IMMEDIATE", None, waited)
        try:
            yield
        finally:
            self._writers.release()

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A read-only unit of work: on SQLite it does not wait for (or block) writers."""
        with Session(self.engine.execution_options(readonly=True), expire_on_commit=False) as session:
            yield session  # closing ends the read transaction; loaded rows stay usable

    def migrate(self) -> None:
        """Bring the schema up to date (Alembic `upgrade head`)."""
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        with self.engine.begin() as conn:
            if self.is_postgres:
                # Two replicas starting together must not both run the migration.
                conn.execute(text("SELECT pg_advisory_xact_lock(727274)"))
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def healthy(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except Exception:  # noqa: BLE001 - any failure means unhealthy
            log.exception("database health check failed")
            return False

    def dispose(self) -> None:
        self.engine.dispose()
