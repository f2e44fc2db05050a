"""A wall-clock deadline for a whole HTTP request, which `requests` does not have.

Why: `requests`' read timeout bounds each socket read, not the answer. A server
that sends one byte every few seconds (headers or body) never trips it, and the
request, the worker thread and the sync hang for as long as the server likes.

How: `DeadlineAdapter` builds its connection pools from connection classes that,
when they connect or send a request, attach themselves to the `Watch` bound to the
current thread by `deadline(seconds)`. One watchdog thread per process keeps the
watches in a heap; a watch still running at its deadline gets its socket shut
down, so the blocked read returns at once and `requests` raises. The caller then
sees `watch.expired` and says why. (A cut can also look like a short but complete answer,
e.g. headers ended by the EOF, so a caller must check `watch.expired` after success too.)

    with deadline(120.0) as watch:
        try:
            resp = session.get(url, timeout=(5, 30), stream=True)
            body = resp.content
        except requests.RequestException:
            if watch.expired: ...  # too slow overall, not a broken connection
"""
from __future__ import annotations

import heapq
import itertools
import socket
import threading
import time
from contextlib import contextmanager

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

_bound = threading.local()


_LOCK = threading.Lock()  # guards every Watch's state (held for microseconds)


class Watch:
    """One request's deadline; `expired` turns True when the watchdog cut it."""

    __slots__ = ("at", "expired", "done", "_conns")

    def __init__(self, at: float):
        self.at = at
        self.expired = False
        self.done = False
        self._conns: list[HTTPConnection] = []

    def attach(self, conn: HTTPConnection) -> None:
        with _LOCK:
            if conn not in self._conns:
                self._conns.append(conn)
            expired = self.expired
        if expired:
            _cut(conn)

    def _expire(self) -> None:
        with _LOCK:
            if self.done:
                return
            self.expired = True
            conns = list(self._conns)
        for conn in conns:
            _cut(conn)

    def _finish(self) -> None:
        with _LOCK:
            self.done = True
            self._conns.clear()


def _cut(conn: HTTPConnection) -> None:
    # conn.sock is None once http.client handed the socket to a response that ends with the
    # connection (no Content-Length, "Connection: close"): the socket it connected is used then
    for sock in {id(s): s for s in (getattr(conn, "sock", None), getattr(conn, "_watched_sock", None)) if s}.values():
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _Watchdog:
    """The one thread that expires watches, started on first use."""

    def __init__(self):
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Watch]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def add(self, watch: Watch) -> None:
        with self._cond:
            if len(self._heap) > 4096:  # requests that ended in time wait in the heap until their deadline:
                live = [entry for entry in self._heap if not entry[2].done]  # drop them now and then
                if len(live) < len(self._heap) // 2:
                    heapq.heapify(live)
                    self._heap = live
            heapq.heappush(self._heap, (watch.at, next(self._order), watch))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="http-deadline", daemon=True)
                self._thread.start()
            elif self._heap[0][2] is watch:
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._heap and self._heap[0][2].done:
                    heapq.heappop(self._heap)  # finished in time: forget it
                if not self._heap:
                    self._cond.wait(timeout=30.0)
                    continue
                wait = self._heap[0][0] - time.monotonic()
                if wait > 0:
                    self._cond.wait(timeout=wait)
                    continue
                watch = heapq.heappop(self._heap)[2]
            watch._expire()


_WATCHDOG = _Watchdog()


@contextmanager
def deadline(seconds: float | None):
    """Bind a Watch of `seconds` to this thread for the requests made inside; None = no deadline."""
    if seconds is None:
        yield Watch(float("inf"))
        return
    watch = Watch(time.monotonic() + seconds)
    previous = getattr(_bound, "watch", None)
    _bound.watch = watch
    _WATCHDOG.add(watch)
    try:
        yield watch
    finally:
        watch._finish()
        _bound.watch = previous


def _attach(conn: HTTPConnection) -> None:
    watch = getattr(_bound, "watch", None)
    if watch is not None:
        watch.attach(conn)


class _WatchedHTTPConnection(HTTPConnection):
    def connect(self):
        _attach(self)
        super().connect()
        self._watched_sock = self.sock
        _attach(self)  # the socket exists now: a watch that expired meanwhile cuts it

    def request(self, *args, **kwargs):
        _attach(self)
        return super().request(*args, **kwargs)


class _WatchedHTTPSConnection(HTTPSConnection):
    def connect(self):
        _attach(self)
        super().connect()
        self._watched_sock = self.sock
        _attach(self)

    def request(self, *args, **kwargs):
        _attach(self)
        return super().request(*args, **kwargs)


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_POOLS = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class DeadlineAdapter(HTTPAdapter):
    """An HTTPAdapter whose connections honour `deadline()` (proxied ones too)."""

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_POOLS)

    def proxy_manager_for(self, proxy, **proxy_kwargs):
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = dict(_POOLS)
        return manager
