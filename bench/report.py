"""One table of figures, printed and written to bench/results.json."""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).with_name("results.json")


@dataclass
class Row:
    figure: int
    measure: str
    unit: str
    ours: float
    baseline: float | None = None
    target: str = ""
    met: bool | None = None  # None: informational
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0:
            return None
        return self.ours / self.baseline


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    if value == int(value) and abs(value) < 1e6:
        return str(int(value))
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


def table(rows: list[Row]) -> str:
    header = ("#", "measure", "unit", "ours", "baseline", "ratio", "target", "result", "note")
    lines = [
        (
            str(row.figure),
            row.measure,
            row.unit,
            _number(row.ours),
            _number(row.baseline),
            "-" if row.ratio is None else f"{row.ratio:.2f}x",
            row.target or "-",
            {True: "MET", False: "MISSED", None: "info"}[row.met],
            row.note,
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]
    numeric = {3, 4, 5}

    def render(cells: tuple[str, ...]) -> str:
        return "  ".join(
            cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i])
            for i, cell in enumerate(cells)
        ).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([render(header), rule, *(render(line) for line in lines)])


def write_results(rows: list[Row], raw: dict[str, Any], seconds: float) -> Path:
    document = {
        "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "duration_s": round(seconds, 1),
        "rows": [{**asdict(row), "ratio": row.ratio} for row in rows],
        "raw": raw,
    }
    RESULTS.write_text(json.dumps(document, indent=2) + "\n")
    return RESULTS
