"""The statistics the two overhead benches share (monitor_overhead.py, torch_overhead.py): paired ratios of
alternating blocks, their median, inter-quartile range and a bootstrap interval of the median, and the
machine's load, so a reader sees how finely a figure is resolved on a noisy machine."""

from __future__ import annotations

import os
import random
import statistics
from typing import Any


def quartiles(xs: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], q[2]


def bootstrap_median(xs: list[float], n: int = 4000, seed: int = 0) -> tuple[float, float]:
    """A 95% interval of the median (percentile bootstrap over the pairs, fixed seed: reproducible)."""
    rng = random.Random(seed)
    meds = sorted(statistics.median(rng.choices(xs, k=len(xs))) for _ in range(n))
    return meds[int(0.025 * n)], meds[int(0.975 * n) - 1]


def summary(ratios: list[float]) -> dict[str, Any]:
    """Median, IQR and bootstrap 95% interval of paired overhead ratios, in percent."""
    pct = [100 * r for r in ratios]
    lo, hi = quartiles(pct)
    b_lo, b_hi = bootstrap_median(pct)
    return {
        "median_pct": round(statistics.median(pct), 3),
        "iqr_pct": [round(lo, 3), round(hi, 3)],
        "ci95_pct": [round(b_lo, 3), round(b_hi, 3)],
        "pairs": len(pct),
    }


def describe(name: str, s: dict[str, Any]) -> str:
    return (
        f"{name}: median {s['median_pct']:+.3f}% over {s['pairs']} pairs; 95% interval of the median "
        f"[{s['ci95_pct'][0]:+.3f}%, {s['ci95_pct'][1]:+.3f}%]; inter-quartile [{s['iqr_pct'][0]:+.3f}%, "
        f"{s['iqr_pct'][1]:+.3f}%]"
    )


def load() -> list[float]:
    """The 1, 5 and 15 minute load averages (other processes compete for the cores)."""
    return [round(x, 2) for x in os.getloadavg()]
