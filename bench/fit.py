"""Least-squares slopes for the growth figures, and whether a series levels off."""
from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Sequence


@dataclasses.dataclass(frozen=True)
class Fit:
    slope: float          # per unit of x
    intercept: float
    residual_sd: float    # the scatter around the line: what "no change" looks like
    first_half: float     # slope of the first half of the points, and of the second
    second_half: float
    last_third: float     # slope of the last third (a count that stepped once and stayed is level)

    def change(self, span: float) -> float:
        """What the line says changed over `span` units of x."""
        return self.slope * span

    def verdict(self, span: float, tolerance: float) -> str:
        """"flat": the fitted change over the run is within the scatter (or `tolerance`);
        "levels off": it changed, but the second half grows less than a third as fast as the
        first, or the last third no more than the scatter; "grows" otherwise (a cost that
        rises with time)."""
        noise = max(2 * self.residual_sd, tolerance)
        if abs(self.change(span)) <= noise:
            return "flat"
        if (abs(self.second_half * span / 2) <= noise or abs(self.last_third * span / 3) <= tolerance
                or (self.first_half > 0 and self.second_half < self.first_half / 3)):
            return "levels off"
        return "grows"


def line(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """(slope, intercept) of the least-squares line; slope 0 for fewer than two x values."""
    if len(set(xs)) < 2:
        return 0.0, (statistics.fmean(ys) if ys else 0.0)
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
    return slope, my - slope * mx


def fit(xs: Sequence[float], ys: Sequence[float | None]) -> Fit | None:
    """The fit of the points whose y is known; None with fewer than three."""
    points = [(float(x), float(y)) for x, y in zip(xs, ys, strict=True) if y is not None]
    if len(points) < 3:
        return None
    px, py = [p[0] for p in points], [p[1] for p in points]
    slope, intercept = line(px, py)
    residuals = [y - (slope * x + intercept) for x, y in points]
    half, third = len(points) // 2, len(points) * 2 // 3
    return Fit(slope=slope, intercept=intercept,
               residual_sd=statistics.pstdev(residuals),
               first_half=line(px[:half + 1], py[:half + 1])[0],
               second_half=line(px[half:], py[half:])[0],
               last_third=line(px[third:], py[third:])[0])
