"""Policies and catalogues for the running services: read from ``MEDSETTLE_POLICY_DIRS`` at start,
then watched.

One :class:`~libs.policy.loader.PolicyStore` per set of folders per process (eligibility and
settlement share it in all-in-one mode), and one watcher task per store, however many modules use
it. The watcher polls the folders' file list and stat data every ``MEDSETTLE_POLICY_POLL_SECONDS``;
when something changed it loads the whole set again in a worker thread and swaps it in only if
every file is valid. A refused set is logged once (every problem, with its path in its file) and
the old set stays in force.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from libs.core.errors import DomainError
from libs.platform.logs import get_logger
from libs.platform.settings import Settings
from libs.policy.loader import PolicyStore, Reloaded, parse_dirs

_log = get_logger("medsettle.policies")
MAX_LOGGED_PROBLEMS = 50

_stores: dict[tuple[Path, ...], PolicyStore] = {}


def store_for(settings: Settings) -> PolicyStore:
    """The process's store for the configured folders (loaded on first use; a bad set at start
    raises, naming every problem, and the service does not start)."""
    dirs = tuple(p.resolve() for p in parse_dirs(settings.policy_dirs))
    store = _stores.get(dirs)
    if store is None:
        store = _stores[dirs] = PolicyStore(dirs)
        _log.info(
            "policy_set_loaded",
            dirs=[str(d) for d in dirs],
            versions=list(store.current.versions),
        )
    return store


def forget_stores() -> None:
    """Drop the process's stores (tests: behave like a fresh process)."""
    _stores.clear()


def _log_refused(exc: DomainError) -> None:
    problems = [f"{v.field}: {v.description}" for v in exc.violations[:MAX_LOGGED_PROBLEMS]]
    _log.error(
        "policy_set_refused",
        reason=exc.reason.value,
        problems=problems,
        more=max(0, len(exc.violations) - MAX_LOGGED_PROBLEMS),
        note="the policies and catalogues in force are unchanged",
    )


def reload_now(store: PolicyStore) -> Reloaded | None:
    """One poll: swap in a changed, valid set; log what changed or why it was refused."""
    try:
        changed = store.reload_if_changed()
    except DomainError as exc:
        _log_refused(exc)
        return None
    if changed is not None and (changed.added or changed.removed):
        _log.info("policy_set_reloaded", added=list(changed.added), removed=list(changed.removed))
    return changed


@dataclass
class _Watch:
    task: asyncio.Task[None]
    stop: asyncio.Event
    users: int = 1
    listeners: list[Callable[[Reloaded], None]] = field(default_factory=list)


_watches: dict[int, _Watch] = {}


async def _run(store: PolicyStore, interval: float, watch_stop: asyncio.Event, key: int) -> None:
    while not watch_stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(watch_stop.wait(), timeout=interval)
        if watch_stop.is_set():
            return
        try:
            changed = await asyncio.to_thread(reload_now, store)
        except Exception as exc:  # noqa: BLE001 - an unreadable folder must not stop the watch
            _log.warning("policy_watch_failed", error_type=type(exc).__name__)
            continue
        w = _watches.get(key)
        if changed is not None and w is not None:
            for listener in list(w.listeners):
                listener(changed)


def watch(store: PolicyStore, interval: float, on_change: Callable[[Reloaded], None] | None = None) -> None:
    """Start watching ``store`` (or join the watch already running); pair with :func:`unwatch`."""
    key = id(store)
    w = _watches.get(key)
    if w is None or w.task.done():
        stop = asyncio.Event()
        w = _watches[key] = _Watch(asyncio.create_task(_run(store, interval, stop, key)), stop, users=0)
    w.users += 1
    if on_change is not None:
        w.listeners.append(on_change)


async def unwatch(store: PolicyStore, on_change: Callable[[Reloaded], None] | None = None) -> None:
    key = id(store)
    w = _watches.get(key)
    if w is None:
        return
    if on_change is not None and on_change in w.listeners:
        w.listeners.remove(on_change)
    w.users -= 1
    if w.users <= 0:
        del _watches[key]
        w.stop.set()
        w.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await w.task
