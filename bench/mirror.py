"""`make bench`: the mirror store and `satchel serve` on the local IRSA target, one table.

python -m bench.mirror   (prints the table, writes bench/results.json)
python -m bench.mirror "dist throughput" ...   (only the figures named: a quicker look,
                                                 printed, results.json left alone)
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from bench import dists, metadata, serve
from bench.harness import local_target
from bench.report import Row, table, write_results


def main(only: list[str]) -> int:
    began = time.perf_counter()
    rows: list[Row] = []
    raw: dict[str, Any] = {}
    with local_target() as bench:
        app = bench.app()  # stateless, exactly the pod's env otherwise
        try:
            raw["upload_s"] = dists.upload(app)
            _progress(f"uploaded the dists in {raw['upload_s']:.1f} s")
            figures: list[tuple[str, Callable[[], tuple[list[Row], dict[str, Any]]]]] = [
                ("requests per metadata read", lambda: metadata.requests_per_read(bench, app)),
                ("metadata read times", lambda: metadata.read_times(bench, app)),
                ("dist throughput", lambda: dists.throughput(bench, app)),
                ("dist throughput across a network", lambda: dists.across_a_network(bench)),
                ("RSS while streaming", lambda: dists.rss(bench)),
                ("concurrent readers", lambda: dists.concurrent_readers(bench, app)),
                ("satchel serve under wrk", lambda: serve.figures(bench)),
            ]
            unknown = set(only) - {name for name, _ in figures}
            if unknown:
                print(f"unknown figures: {sorted(unknown)}", file=sys.stderr)
                return 2
            for name, figure in figures:
                if only and name not in only:
                    continue
                figure_rows, figure_raw = figure()
                rows += figure_rows
                raw.update(figure_raw)
                _progress(f"{name}: done at {time.perf_counter() - began:.0f} s")
        finally:
            dists.delete(app)
    elapsed = time.perf_counter() - began
    print(table(rows))
    missed = [row for row in rows if row.met is False]
    print(f"\n{len(rows)} figures, {len(missed)} target(s) missed, {elapsed:.0f} s")
    if not only:
        print(f"written to {write_results(rows, raw, elapsed)}")
    return 0


def _progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
