"""``medsettle serve SERVICE --workers N``: N processes serving one port.

Each worker is a process of its own, forked by this supervisor before any gRPC object, event loop
or database connection exists (as the gRPC multiprocessing example does); every worker binds the
same port with SO_REUSEPORT and the kernel spreads incoming connections over them. The workers
share nothing but the database: group commit, row locks and the outbox's numbering lock already
make concurrent batches of several processes correct (tests/integration/test_workers.py).

The supervisor runs the migrations once (in a child of its own) before the workers start,
forwards SIGTERM/SIGINT to the workers and waits for their drain, and starts a worker again when
one dies (at most ``MAX_RESTARTS`` in ``RESTART_WINDOW`` seconds, then it stops them all and fails:
a crash loop is an operator's problem, not something to hide). A worker that exits with 2 (bad
settings or policies) stops the whole group with 2. Each worker asks the kernel for SIGTERM when
the supervisor dies, so a killed supervisor leaves no orphans.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import signal
import time
from collections.abc import Callable

from libs.platform.logs import get_logger

_log = get_logger("medsettle.workers")
MAX_RESTARTS = 5
RESTART_WINDOW = 60.0
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    with contextlib.suppress(Exception):  # Linux only; elsewhere an orphan is the operator's to stop
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _fork(run: Callable[[], int]) -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        _die_with_parent()
        code = run()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - a forked child must end in os._exit, whatever happened
        _log.exception("worker_crashed")
    finally:
        os._exit(code)


def _exit_code(status: int) -> int:
    return os.waitstatus_to_exitcode(status)


def serve_workers(count: int, run_worker: Callable[[int], int], migrate: Callable[[], int] | None = None) -> int:
    """Runs ``run_worker(i)`` for i in 0..count-1, each in a forked process, until a signal."""
    if migrate is not None:
        _, status = os.waitpid(_fork(migrate), 0)
        if (code := _exit_code(status)) != 0:
            _log.error("migrations_failed", exit_code=code)
            return code
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(workers):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    workers: dict[int, int] = {}  # pid -> worker index
    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    restarts: list[float] = []
    result = 0
    try:
        for i in range(count):
            workers[_fork(functools.partial(run_worker, i))] = i
        _log.info("workers_started", workers=count, pids=sorted(workers))
        while workers:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            except InterruptedError:
                continue
            index = workers.pop(pid, None)
            if index is None:
                continue
            code = _exit_code(status)
            if stopping:
                _log.info("worker_stopped", worker=index, pid=pid, exit_code=code)
                continue
            _log.warning("worker_exited", worker=index, pid=pid, exit_code=code)
            now = time.monotonic()
            restarts = [t for t in restarts if now - t < RESTART_WINDOW] + [now]
            if code == 2 or len(restarts) > MAX_RESTARTS:
                result = 2 if code == 2 else 1
                _log.error("workers_giving_up", worker=index, exit_code=code, restarts=len(restarts))
                stop(signal.SIGTERM, None)
                continue
            time.sleep(0.5)
            if not stopping:
                workers[_fork(functools.partial(run_worker, index))] = index
                _log.info("worker_restarted", worker=index, pid=max(workers))
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return result
