"""What a job shows while it runs: a tqdm bar on a terminal (records/s, tokens/s, errors, ETA), a JSON line
every `every` seconds for logs that are not one, nothing when quiet; and a summary at the end."""

from __future__ import annotations

import json
import sys
import threading
import time


class Progress:
    def __init__(self, quiet: bool = False, json_lines: bool | None = None, every: float = 10.0, stream=None):
        """`json_lines`: None picks by the stream (a terminal gets the bar)."""
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.json_lines = (not self.stream.isatty()) if json_lines is None else json_lines
        self.every = every
        self.records = 0
        self.computed = 0  # records of this run (not skipped)
        self.errors = 0
        self.token_count = 0
        self.total: int | None = None
        self._started = time.monotonic()
        self._last = 0.0
        self._bar = None
        self._lock = threading.Lock()

    def start(self, count=None) -> None:
        """`count`: called in the background for the input's size (None: unknown)."""
        self._started = self._last = time.monotonic()
        if count is not None:
            threading.Thread(target=self._count, args=(count,), daemon=True, name="bulk-count").start()
        if not self.quiet and not self.json_lines:
            from tqdm import tqdm

            self._bar = tqdm(total=None, unit=" records", file=self.stream, dynamic_ncols=True, smoothing=0.1)

    def _count(self, count) -> None:
        try:
            total = count()
        except Exception:  # noqa: BLE001 - an ETA is a nicety: the job runs without one
            return
        self.total = total
        if self._bar is not None and total is not None:
            self._bar.total = total
            self._bar.refresh()

    def tokens(self, count: int) -> None:
        with self._lock:
            self.token_count += count

    def advance(self, records: int, errors: int, skipped: bool = False) -> None:
        with self._lock:
            self.records += records
            self.errors += errors
            if not skipped:
                self.computed += records
        if self._bar is not None:
            self._bar.update(records)
            self._bar.set_postfix(self._rates(), refresh=False)
        elif self.json_lines and not self.quiet and time.monotonic() - self._last >= self.every:
            self._last = time.monotonic()
            self._line({"progress": self.snapshot()})

    def _rates(self) -> dict:
        elapsed = max(1e-9, time.monotonic() - self._started)
        return {"tokens/s": f"{self.token_count / elapsed:.0f}", "errors": self.errors}

    def snapshot(self) -> dict:
        elapsed = max(1e-9, time.monotonic() - self._started)
        rate = self.computed / elapsed
        left = None if self.total is None or rate <= 0 else max(0.0, (self.total - self.records) / rate)
        return {
            "records": self.records,
            "total": self.total,
            "records_per_s": round(rate, 1),
            "tokens_per_s": round(self.token_count / elapsed, 1),
            "errors": self.errors,
            "eta_s": None if left is None else round(left, 1),
        }

    def close(self, summary) -> None:
        if self._bar is not None:
            self._bar.close()
        if self.quiet:
            return
        if self.json_lines:
            self._line({"summary": summary.as_dict()})
            return
        rate = (summary.records - summary.skipped) / max(1e-9, summary.seconds)
        self.stream.write(
            f"{summary.embedded} vectors to {summary.output} ({summary.rejected} rejected, {summary.skipped} done "
            f"before, {summary.duplicates} duplicates computed once) in {summary.seconds:.1f} s: "
            f"{rate:.1f} records/s, {summary.tokens / max(1e-9, summary.seconds):.0f} tokens/s\n"
        )

    def _line(self, entry: dict) -> None:
        self.stream.write(json.dumps(entry) + "\n")
        self.stream.flush()
