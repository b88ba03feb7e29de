"""`rehearse serve` over HTTP runs in two processes, so that answering Slack never waits for the work behind it.

The web process answers Slack (storing events and clicks in the Slack inbox), the scored-call webhook, slash
commands and modal submissions. The worker process runs everything after the answer: the inbox's listeners, the
practice pool (the buyer and the grader), the outbox sender and the scheduled jobs. Python runs one thread at a
time per process, so in one process a burst of listeners and a slow model's replies would hold up the answers.

They share the database, which holds everything pending, and a doorbell: a socket pair over which the web process
says "inbox" or "outbox" after committing rows for the worker, so they are taken at once rather than at the next
sweep. The worker runs at a lower CPU priority, so acknowledgements win the CPU during a burst. When the worker
dies, the web process starts it again; when the web process dies, the worker's doorbell closes and it stops.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

INBOX, OUTBOX = b"i", b"o"
READY = b"ready"  # the worker's one message to the web process: it has started and takes work
START_WAIT_S = 60
DOORBELL_FD = "REHEARSE_DOORBELL_FD"  # set by `rehearse serve` for the worker it starts
NICENESS = 5  # the worker's CPU priority below the web process's
RESTART_DELAYS_S = (1, 2, 5, 10, 30)
METRICS_DIR_PREFIX = "rehearse-metrics-"
METRICS_DIR_OWNER = ".serve"  # a file in the directory whose lock `serve` holds for its life


@contextmanager
def shared_metrics() -> Iterator[Path]:
    """PROMETHEUS_MULTIPROC_DIR for serve and its worker, so `/metrics` adds both up: a fresh directory, removed at
    exit. Set it before the metrics library is loaded. Directories left by a serve killed with SIGKILL (nobody holds
    their lock any more; a lock, not a pid, so serves in containers sharing /tmp tell each other apart) are removed
    first. A directory the operator set is used as it is."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        yield Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
        return
    for left in Path(tempfile.gettempdir()).glob(f"{METRICS_DIR_PREFIX}*"):
        _remove_if_abandoned(left)
    making = Path(tempfile.mkdtemp(prefix=f".{METRICS_DIR_PREFIX}"))  # locked before another serve can see it
    owner = os.open(making / METRICS_DIR_OWNER, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(owner, fcntl.LOCK_EX)
    path = making.with_name(making.name[1:])
    making.rename(path)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        os.close(owner)
        del os.environ["PROMETHEUS_MULTIPROC_DIR"]


def _remove_if_abandoned(path: Path) -> None:
    try:
        owner = os.open(path / METRICS_DIR_OWNER, os.O_RDWR)
    except OSError:
        return  # not one of ours, or being made right now
    try:
        fcntl.flock(owner, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return  # its serve is running
    finally:
        os.close(owner)  # (closing also lets go of a lock just taken)
    shutil.rmtree(path, ignore_errors=True)


class WorkerProcess:
    """`rehearse worker`, started by the web process, restarted when it exits unasked, and rung on commits."""

    def __init__(self) -> None:
        self._stopping = threading.Event()
        self._process: subprocess.Popen | None = None
        self._bell: socket.socket | None = None
        self._watcher: threading.Thread | None = None

    def start(self) -> None:
        """Start the worker and wait until it takes work, so that a healthy web server means a working whole."""
        self._spawn(wait=True)
        self._watcher = threading.Thread(target=self._watch, daemon=True, name="worker-watch")
        self._watcher.start()

    def ring(self, what: bytes) -> None:
        """Tell the worker there are new rows; never blocks (when it is not listening, its sweep finds them)."""
        bell = self._bell
        try:
            if bell is not None:
                bell.send(what)
        except OSError:  # full (rings are waiting already) or the worker is restarting
            pass

    def stop(self, timeout: float = 30) -> None:
        """Close the doorbell (the worker finishes what it holds and exits), then wait for it."""
        self._stopping.set()
        if self._bell is not None:
            self._bell.close()
        if self._process is None:
            return
        try:
            self._process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log.error("the worker did not stop within %g s; killing it", timeout)
            self._process.kill()
            self._process.wait()

    def _spawn(self, *, wait: bool = False) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._process = subprocess.Popen([sys.executable, "-m", "bot", "worker"],
                                         env={**os.environ, DOORBELL_FD: str(theirs.fileno())},
                                         pass_fds=(theirs.fileno(),))
        theirs.close()
        if wait:
            ours.settimeout(START_WAIT_S)
            try:
                ready = ours.recv(16) == READY
            except TimeoutError:
                ready = False
            if not ready:  # it is watched: started again if it exits; its work waits in the database meanwhile
                log.error("worker process %d did not report ready within %d s", self._process.pid, START_WAIT_S)
        ours.setblocking(False)
        old, self._bell = self._bell, ours
        if old is not None:
            old.close()
        log.info("worker process %d started", self._process.pid)

    def _watch(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            started = time.monotonic()
            code = self._process.wait()
            if self._stopping.is_set():
                return
            failures = 0 if time.monotonic() - started > 60 else failures + 1
            delay = RESTART_DELAYS_S[min(failures, len(RESTART_DELAYS_S) - 1)]
            log.error("worker process exited with %s; starting it again in %d s (what it held is taken again "
                      "when its lease lapses)", code, delay)
            if self._stopping.wait(delay):
                return
            self._spawn()


def listen(on_inbox: Callable[[], None], on_outbox: Callable[[], None]) -> None:
    """The worker's main thread: answer rings until the web process closes the doorbell (or SIGTERM).

    Without a doorbell (a worker run on its own), it runs until SIGTERM and finds new rows by its sweeps.
    """
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    fd = os.environ.get(DOORBELL_FD)
    if not fd:
        while not stop.wait(3600):
            pass
        return
    bell = socket.socket(fileno=int(fd))
    bell.settimeout(0.5)
    with bell:
        bell.send(READY)
        while not stop.is_set():
            try:
                rung = bell.recv(64)
            except TimeoutError:
                continue
            if not rung:
                return  # the web process is gone
            if INBOX in rung:
                on_inbox()
            if OUTBOX in rung:
                on_outbox()
