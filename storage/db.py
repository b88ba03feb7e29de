"""Engine, sessions and migrations. SQLite by default, PostgreSQL for several replicas."""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event, make_url, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"
WRITE_WAIT_S = 30  # on SQLite, the longest a writer waits, for its turn and for the file's lock together
TURN_POLL_S = 0.0005  # how often a writer of another process looks whether the turn is free


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
            options = conn.get_execution_options()
            deadline = options.get("write_deadline")  # set by `Database.session` once the writer has its turn
            _wait_for_lock(conn, WRITE_WAIT_S if deadline is None else deadline - time.monotonic())
            conn.exec_driver_sql("BEGIN" if options.get("readonly") else "BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


class Database:
    """One engine plus the sessions every service uses; tells listeners when outbox rows commit."""

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        self._on_outbox_commit: list[Callable[[], None]] = []
        # SQLite has one writer at a time. Writers queue for a turn here rather than in SQLite's busy handler, which
        # sleeps (up to 100 ms a try) and leaves the lock idle while they sleep: a writer that kept missing the lock
        # waited 300 ms in a burst. Those of this process queue on a lock; those of other processes (`serve`'s web
        # process and its worker, a `rehearse ingest`) on record locks in a file beside the database.
        self._writers = threading.RLock() if url.startswith("sqlite") else None
        self._turns_held = 0
        self._turn_file = _turn_file(url) if self._writers is not None else None
        self._inbox: Database | None = None

    @property
    def inbox(self) -> Database:
        """Where the Slack inbox lives (`storage.inbox`): this database on PostgreSQL; on SQLite, a file of its own
        beside it (`<db>-inbox`). SQLite has one writer per file, and storing what Slack sends must not wait for the
        worker's writes: in a burst, the web process waited up to 70 ms a commit for one of them to end."""
        if self._inbox is None:
            url = make_url(self.url)
            self._inbox = self if self._turn_file is None else \
                Database(url.set(database=f"{url.database}-inbox").render_as_string(hide_password=False))
        return self._inbox

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    def on_outbox_commit(self, callback: Callable[[], None]) -> None:
        """Call `callback` after any commit that added outbox rows (wakes the sender)."""
        self._on_outbox_commit.append(callback)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: commits on success, rolls back on error."""
        with self.writer_turn() as deadline, Session(self.engine if deadline is None else self.engine.execution_options(
                write_deadline=deadline), expire_on_commit=False) as session:
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
    def writer_turn(self) -> Iterator[float | None]:
        """On SQLite, one writer at a time across this database's processes; a writer that waits longer than
        WRITE_WAIT_S fails as if SQLite were locked (a process holding the lock must not queue the others forever).
        Yields the deadline (`time.monotonic()`) by which its transaction must have SQLite's lock; None elsewhere."""
        if self._writers is None:
            yield None
            return
        deadline = time.monotonic() + WRITE_WAIT_S
        if not self._writers.acquire(timeout=WRITE_WAIT_S):
            raise _locked(f"no turn to write within {WRITE_WAIT_S} s")
        try:
            if self._turns_held == 0 and self._turn_file is not None:
                _take_file_turn(self._turn_file, deadline)
            self._turns_held += 1
            try:
                yield deadline
            finally:
                self._turns_held -= 1
                if self._turns_held == 0 and self._turn_file is not None:
                    fcntl.lockf(self._turn_file, fcntl.LOCK_UN, 1, TURN)
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
            if self.inbox is not self:  # its one table, created while this transaction keeps other processes out
                from storage.models import SlackInboxItem

                SlackInboxItem.metadata.create_all(self.inbox.engine, tables=[SlackInboxItem.__table__])

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
        if self._inbox is not None and self._inbox is not self:
            self._inbox.dispose()
        if self._turn_file is not None:
            os.close(self._turn_file)
            self._turn_file = None


def _wait_for_lock(conn, seconds: float) -> None:  # noqa: ANN001
    """SQLite's busy timeout for the transaction about to begin: what is left of the writer's WRITE_WAIT_S after
    waiting for its turn, so that a writer never waits twice 30 s. Set only when it changes by over 0.5 s."""
    wanted = max(1, int(seconds * 1000))
    info = conn.connection.info
    if abs(info.get("busy_ms", WRITE_WAIT_S * 1000) - wanted) > 500:
        conn.exec_driver_sql(f"PRAGMA busy_timeout={wanted}")
        info["busy_ms"] = wanted


def _turn_file(url: str) -> int | None:
    """The file whose lock is the writers' turn: beside the database file (none for an in-memory database)."""
    path = make_url(url).database
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    return os.open(f"{path}-writers.lock", os.O_RDWR | os.O_CREAT, 0o600)


# Two bytes of the lock file: a writer first queues (QUEUE), then waits for the turn (TURN) and leaves the queue. While
# one process holds the turn and another waits for it, a third (or the holder again, with its next transaction)
# waits at the queue: the turn alternates between processes instead of staying with the busiest one. These are POSIX
# record locks, held per process: two `Database` objects on one file in one process do not exclude each other here
# (SQLite's own lock still does). The turn only orders writers; SQLite's lock is what keeps them apart.
QUEUE, TURN = 0, 1


def _take_file_turn(fd: int, deadline: float) -> None:
    _lock_byte(fd, QUEUE, deadline)
    try:
        _lock_byte(fd, TURN, deadline)
    finally:
        fcntl.lockf(fd, fcntl.LOCK_UN, 1, QUEUE)


def _lock_byte(fd: int, byte: int, deadline: float) -> None:
    while True:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, byte)
            return
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EAGAIN):
                raise
            if time.monotonic() > deadline:
                raise _locked(f"no turn to write within {WRITE_WAIT_S} s (another process is writing)") from None
            time.sleep(TURN_POLL_S)


def _locked(why: str) -> OperationalError:
    return OperationalError("BEGIN IMMEDIATE", None, sqlite3.OperationalError(f"database is locked: {why}"))
