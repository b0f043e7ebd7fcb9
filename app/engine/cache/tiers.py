"""The cache's tiers: a byte-bounded LRU in each worker, and an optional Redis shared by every instance.

Redis is an optimisation, never a dependency: every call has REDIS_TIMEOUT,
writes go through a bounded queue off the request's path, and after a few
errors in a row the tier switches itself off for a while (logged once) and
then tries again.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

_FAILURES_TO_TRIP = 3
_WRITE_QUEUE = 1024


@dataclass(frozen=True)
class CacheConfig:
    local_bytes: int = 64 * 1024 * 1024  # 0: no local tier
    redis_url: str = ""  # empty: no Redis tier
    ttl: int = 86400  # seconds an entry lives in Redis
    redis_timeout: float = 0.05  # seconds per Redis call
    redis_retry_after: float = 30.0  # seconds the Redis tier stays off after failing repeatedly

    @property
    def enabled(self) -> bool:
        return self.local_bytes > 0 or bool(self.redis_url)


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    errors: int = 0
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"hits": self.hits, "misses": self.misses, "errors": self.errors, **self.extra}


class LocalCache:
    """Least recently used entries first out, keeping the values' bytes under `capacity`."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._entries: OrderedDict[bytes, bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.stats = CacheStats()

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def get_many(self, keys: list[bytes]) -> dict[bytes, bytes]:
        found = {}
        with self._lock:
            for key in keys:
                value = self._entries.get(key)
                if value is not None:
                    self._entries.move_to_end(key)
                    found[key] = value
            self.stats.hits += len(found)
            self.stats.misses += len(keys) - len(found)
        return found

    def set_many(self, items: dict[bytes, bytes]) -> None:
        with self._lock:
            for key, value in items.items():
                cost = len(key) + len(value)
                if cost > self.capacity:
                    continue
                old = self._entries.pop(key, None)
                if old is not None:
                    self._bytes -= len(key) + len(old)
                self._entries[key] = value
                self._bytes += cost
                while self._bytes > self.capacity:
                    evicted_key, evicted = self._entries.popitem(last=False)
                    self._bytes -= len(evicted_key) + len(evicted)

    def describe(self) -> dict:
        return {**self.stats.as_dict(), "entries": len(self), "bytes": self._bytes, "capacity_bytes": self.capacity}


class RedisTier:
    def __init__(self, url: str, ttl: int, timeout: float, retry_after: float = 30.0, prefix: bytes = b"emb:"):
        self.url = url
        self.ttl = ttl
        self.timeout = timeout
        self.retry_after = retry_after
        self.prefix = prefix
        self.stats = CacheStats()
        self._client = None
        self._client_pid: int | None = None
        self._failures = 0
        self._paused_until = 0.0
        self._writes: queue.Queue | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------ the client
    def _redis(self):
        # One client per process: a connection pool made before fork would be shared by the workers.
        if self._client_pid != os.getpid():
            import redis

            self._client = redis.Redis.from_url(
                self.url,
                socket_timeout=self.timeout,
                socket_connect_timeout=self.timeout,
                retry_on_timeout=False,
                health_check_interval=0,
            )
            self._client_pid = os.getpid()
            self._writes = queue.Queue(maxsize=_WRITE_QUEUE)
            threading.Thread(target=self._write_loop, name="cache-redis-writes", daemon=True).start()
        return self._client

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._paused_until

    def _failed(self, exc: Exception) -> None:
        with self._lock:
            self.stats.errors += 1
            self._failures += 1
            if self._failures >= _FAILURES_TO_TRIP and self.available:
                self._paused_until = time.monotonic() + self.retry_after
                log.warning(
                    "cache: Redis at %s failed %d times in a row (%s: %s); not using it for %g s",
                    _redacted(self.url),
                    self._failures,
                    type(exc).__name__,
                    exc,
                    self.retry_after,
                )

    def _succeeded(self) -> None:
        if self._failures:
            with self._lock:
                if self._failures >= _FAILURES_TO_TRIP:
                    log.info("cache: Redis at %s answers again", _redacted(self.url))
                self._failures = 0

    # ------------------------------------------------------------ reads, writes
    def get_many(self, keys: list[bytes]) -> dict[bytes, bytes]:
        if not keys or not self.available:
            return {}
        try:
            values = self._redis().mget([self.prefix + key for key in keys])
        except Exception as exc:  # noqa: BLE001 - any Redis failure is a miss, never the request's failure
            self._failed(exc)
            return {}
        self._succeeded()
        found = {key: value for key, value in zip(keys, values) if value is not None}
        self.stats.hits += len(found)
        self.stats.misses += len(keys) - len(found)
        return found

    def set_many(self, items: dict[bytes, bytes]) -> None:
        """Queued for the writer: a request never waits for Redis to store what it computed."""
        if not items or not self.available:
            return
        self._redis()
        try:
            self._writes.put_nowait(items)
        except queue.Full:
            self.stats.extra["writes_dropped"] = self.stats.extra.get("writes_dropped", 0) + 1

    def _write_loop(self) -> None:
        writes = self._writes
        while True:
            items = writes.get()
            if not self.available:
                continue
            try:
                pipeline = self._client.pipeline(transaction=False)
                for key, value in items.items():
                    pipeline.set(self.prefix + key, value, ex=self.ttl)
                pipeline.execute()
            except Exception as exc:  # noqa: BLE001 - a lost write is a later miss
                self._failed(exc)
            else:
                self._succeeded()

    def describe(self) -> dict:
        return {**self.stats.as_dict(), "url": _redacted(self.url), "available": self.available}


def _redacted(url: str) -> str:
    """redis://user:secret@host -> redis://***@host"""
    scheme, _, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return f"{scheme}://{rest}" if rest else url


class TieredCache:
    """Local first, then Redis; what Redis had is copied into the local tier."""

    def __init__(self, config: CacheConfig):
        self.config = config
        self.local = LocalCache(config.local_bytes) if config.local_bytes > 0 else None
        self.redis = (
            RedisTier(config.redis_url, config.ttl, config.redis_timeout, config.redis_retry_after)
            if config.redis_url
            else None
        )

    def get_many(self, keys: list[bytes]) -> tuple[dict[bytes, bytes], dict[str, tuple[int, int]]]:
        """Found values, and per tier (hits, misses) for this lookup."""
        found: dict[bytes, bytes] = {}
        counts = {}
        wanted = keys
        if self.local is not None:
            found.update(self.local.get_many(wanted))
            counts["local"] = (len(found), len(wanted) - len(found))
            wanted = [key for key in wanted if key not in found]
        if self.redis is not None and wanted:
            errors = self.redis.stats.errors
            shared = self.redis.get_many(wanted)
            counts["redis"] = (len(shared), len(wanted) - len(shared), self.redis.stats.errors - errors)
            if shared and self.local is not None:
                self.local.set_many(shared)
            found.update(shared)
        return found, counts

    def set_many(self, items: dict[bytes, bytes]) -> None:
        if self.local is not None:
            self.local.set_many(items)
        if self.redis is not None:
            self.redis.set_many(items)

    def describe(self) -> dict:
        return {
            "local": self.local.describe() if self.local else None,
            "redis": self.redis.describe() if self.redis else None,
        }
