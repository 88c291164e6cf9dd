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


def bootstrap(xs: list[Any], stat: Any, n: int = 4000, seed: int = 0) -> tuple[float, float]:
    """A 95% interval of stat(xs) (percentile bootstrap over the pairs, fixed seed: reproducible)."""
    rng = random.Random(seed)
    vals = sorted(stat(rng.choices(xs, k=len(xs))) for _ in range(n))
    return vals[int(0.025 * n)], vals[int(0.975 * n) - 1]


def summary(plain: list[float], measured: list[float]) -> dict[str, Any]:
    """Paired blocks (plain[i], measured[i] ran back to back) -> overhead in percent: the median of the pairs'
    ratios (robust to a disturbed pair; a rare sampled step is not the median pair), and the ratio of the
    totals (every step counted, sampled ones included, noisier), each with its 95% bootstrap interval, and
    the inter-quartile range of the pairs' ratios."""
    pairs = list(zip(plain, measured, strict=True))
    pct = [100 * (q - p) / p for p, q in pairs]

    def total(ps: list[tuple[float, float]]) -> float:
        return 100 * (sum(q for _, q in ps) / sum(p for p, _ in ps) - 1)

    lo, hi = quartiles(pct)
    m_lo, m_hi = bootstrap(pct, statistics.median)
    t_lo, t_hi = bootstrap(pairs, total)
    return {
        "median_pct": round(statistics.median(pct), 3),
        "ci95_pct": [round(m_lo, 3), round(m_hi, 3)],
        "total_pct": round(total(pairs), 3),
        "total_ci95_pct": [round(t_lo, 3), round(t_hi, 3)],
        "iqr_pct": [round(lo, 3), round(hi, 3)],
        "pairs": len(pct),
    }


def describe(name: str, s: dict[str, Any]) -> str:
    return (
        f"{name} over {s['pairs']} pairs: median {s['median_pct']:+.3f}% (95% interval [{s['ci95_pct'][0]:+.3f}%, "
        f"{s['ci95_pct'][1]:+.3f}%]); ratio of totals {s['total_pct']:+.3f}% ([{s['total_ci95_pct'][0]:+.3f}%, "
        f"{s['total_ci95_pct'][1]:+.3f}%]); pairs' inter-quartile range "
        f"[{s['iqr_pct'][0]:+.3f}%, {s['iqr_pct'][1]:+.3f}%]"
    )


def load() -> list[float]:
    """The 1, 5 and 15 minute load averages (other processes compete for the cores)."""
    return [round(x, 2) for x in os.getloadavg()]
