"""What the registry's open check costs: PRAGMA quick_check (run at every open, see
tunelab/registry/damage.py) against integrity_check and a whole open, on registries of N
metric rows shaped like a local run's (plus one event per 10 steps).

    .venv/bin/python bench/registry_open_check.py            # 10k and 100k rows
    .venv/bin/python bench/registry_open_check.py 1000000
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from tunelab.registry import JobRecord, open_registry

ROW = json.dumps({"train_loss": 1.2345678, "valid_loss": 2.3456, "learning_rate": 1e-4,
                  "trained_tokens": 123456, "tokens_per_s": 1234.5})


def build(path: Path, rows: int, jobs: int = 20) -> None:
    with open_registry(path) as registry:
        for index in range(jobs):
            now = time.time()
            registry.create_job(JobRecord(id=f"ftjob-{index}", provider="local",
                                          status="succeeded", created_at=now, updated_at=now))
    with sqlite3.connect(path) as conn:  # bulk, in one transaction: the build is not timed
        conn.executemany("INSERT INTO metrics VALUES (?, ?, ?)",
                         ((f"ftjob-{i % jobs}", i, ROW) for i in range(rows)))
        conn.executemany("INSERT INTO events VALUES (?, ?, ?, 'info', 'metrics', ?, ?)",
                         ((f"ftjob-{i % jobs}", i, time.time(), f"Step {i}", '{"step": 1}')
                          for i in range(0, rows, 10)))
    conn.close()


def best_ms(action, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        action()
        times.append(time.perf_counter() - began)
    return min(times) * 1000


def measure(path: Path) -> dict[str, float]:
    conn = sqlite3.connect(path)
    figures = {pragma: best_ms(lambda p=pragma: conn.execute(f"PRAGMA {p}").fetchall())
               for pragma in ("quick_check", "integrity_check")}
    conn.close()
    figures["open_registry"] = best_ms(lambda: open_registry(path).close())
    return figures


def main(sizes: list[int]) -> None:
    print(f"load average {os.getloadavg()[0]:.1f}")
    for rows in sizes:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "registry.sqlite"
            build(path, rows)
            figures = measure(path)
            size = path.stat().st_size / 1e6
            print(f"{rows:>9,} metric rows, {size:6.1f} MB: " + ", ".join(
                f"{name} {ms:.1f} ms" for name, ms in figures.items()))


if __name__ == "__main__":
    main([int(arg) for arg in sys.argv[1:]] or [10_000, 100_000])
