"""How sure the report is of each challenger-vs-champion delta: paired bootstrap intervals.

Both models are scored on the same test rows, so the rows are resampled together (a paired
bootstrap, `stats.paired_bootstrap`): each replicate's delta is challenger - champion on one
resample. The interval is that delta's spread over resamples of the test rows; it says nothing
about training randomness or about a different test split (docs/review.md). A delta is
*significant* when its interval excludes 0, and then better or worse in the metric's own direction.

The gate reads the intervals report.json records (`Intervals.to_dict` / `from_dict`), so
`modelops gate` decides from report.json alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from modelops import stats, tasks
from modelops.config import BootstrapParams
from modelops.stats import Interval

Direction = Literal["better", "worse", "noise"]
METHOD = "paired bootstrap over the test rows"
# The recorded delta and the bootstrap's own point estimate differ by rounding only (each metric is
# rounded to 6 places before it is subtracted); more than this means they are different numbers.
_ROUNDING = 2.5e-6


@dataclass(frozen=True)
class Intervals:
    """The interval of each metric's delta (challenger - champion) and how it was drawn."""

    deltas: dict[str, Interval]
    level: float = stats.LEVEL
    rounds: int = stats.ROUNDS
    seed: int = stats.SEED
    rows: int | None = None

    @property
    def label(self) -> str:
        """`95%`: the level as the report writes it."""
        return f"{self.level * 100:g}%"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (report.json's gate_inputs.intervals)."""
        return {
            "method": METHOD,
            "level": self.level,
            "rounds": self.rounds,
            "seed": self.seed,
            "rows": self.rows,
            "deltas": {m: i.to_dict() for m, i in self.deltas.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Intervals:
        """Back from report.json; KeyError/TypeError/ValueError on a malformed entry."""
        deltas = {
            str(m): Interval(float(i["value"]), float(i["low"]), float(i["high"]))
            for m, i in data["deltas"].items()
        }
        level = float(data["level"])
        if not 0 < level < 1:
            raise ValueError(f"level {level} is not between 0 and 1")
        return cls(deltas, level, int(data["rounds"]), int(data["seed"]), data.get("rows"))


def direction(metric: str, interval: Interval | None) -> Direction:
    """`better`/`worse` when the interval excludes 0 (in the metric's direction), else `noise`."""
    if interval is None or not interval.significant:
        return "noise"
    up = interval.low > 0
    return "better" if up != (metric in tasks.LOWER_IS_BETTER) else "worse"


def compare(
    task: str,
    y: np.ndarray,
    challenger: np.ndarray,
    champion: np.ndarray,
    recorded: dict[str, Any],
    champion_metrics: dict[str, Any],
    settings: BootstrapParams,
) -> tuple[Intervals, str | None]:
    """The interval of every delta, centred on the delta the report shows, and a note if it cannot be.

    `challenger`/`champion`: each model's predictions on the test rows `y`. The report's deltas are
    the metrics file's numbers minus the champion's re-scored ones; the bootstrap's point estimate
    is the re-scored challenger's. They agree (to rounding) unless the outputs are stale; then the
    interval stays the packaged model's and the note says so.
    """
    metrics = tasks.METRICS[task]
    raw = stats.paired_bootstrap(
        task, y, champion, challenger, metrics, settings.rounds, settings.seed, settings.level
    )
    deltas, apart = {}, []
    for m, interval in raw.items():
        new, old = recorded.get(m), champion_metrics.get(m)
        shown = None if new is None or old is None else round(float(new) - float(old), 6)
        if shown is not None and abs(shown - interval.value) <= _ROUNDING:
            interval = Interval(shown, interval.low, interval.high)
        else:
            apart.append(m)
        deltas[m] = Interval(*(x + 0.0 for x in (interval.value, interval.low, interval.high)))  # no -0.0
    note = None
    if apart:
        note = (
            f"The intervals of {', '.join(apart)} (and their significance) are the packaged model's, "
            "re-scored here; the Δ column and the gate's allowances use the metrics file: they disagree."
        )
    return Intervals(deltas, settings.level, settings.rounds, settings.seed, len(y)), note


# --------------------------------------------------------------------------- markdown cells


def signed(x: float) -> str:
    """`+0.0123`: 4 places, more when 4 would print a nonzero bound as zero; plain `0.0000` for 0."""
    if x == 0:
        return "0.0000"
    for places in (4, 5, 6):
        text = f"{x:+.{places}f}"
        if text.strip("+-0.") != "":
            return text
    return f"{x:+.6f}"


def span(interval: Interval) -> str:
    """`[-0.0040, +0.0079]`."""
    return f"[{signed(interval.low)}, {signed(interval.high)}]"


def interval_cell(interval: Interval | None) -> str:
    """The interval column of the metrics table."""
    return "—" if interval is None else span(interval)


def significance_cell(metric: str, interval: Interval | None) -> str:
    """`✅ yes: better`, `⚠️ yes: worse` or `no: within noise` (`—` without an interval)."""
    if interval is None:
        return "—"
    return {"better": "✅ yes: better", "worse": "⚠️ yes: worse", "noise": "no: within noise"}[
        direction(metric, interval)
    ]


def footnote(intervals: Intervals | None) -> str:
    """What the interval columns mean, under the metrics table."""
    if intervals is None:
        return "No intervals (the champion's predictions on the test rows are missing)."
    rows = f"{intervals.rows} " if intervals.rows else ""
    return (
        f"{intervals.label} interval: paired bootstrap of Δ vs champion over the {rows}test rows "
        f"({intervals.rounds} resamples, seed {intervals.seed}); *significant* when it excludes 0. "
        "It covers the choice of test rows only, not training randomness or another split "
        "(docs/review.md)."
    )
