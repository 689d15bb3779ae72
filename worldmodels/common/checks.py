"""Checks of config values that OmegaConf's type checks cannot make: ranges, positivity, finiteness.

Choices are Enums (:class:`Choice`), so OmegaConf itself rejects a value outside them, naming the key and the
valid values. Every error here names the key, the bad value and what would be valid, so a user can fix it.
Used by every config (the runtime's, each algorithm's, the VAE's and the video model's): one copy, not three.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from enum import Enum


class Choice(str, Enum):
    """Base of every string choice in a config: compares and hashes like its value (``Preset.machado ==
    "machado"``), prints as its value, and is validated by OmegaConf against the member names (name = value)."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


def require_positive(values: Mapping[str, float]) -> None:
    """:raises ValueError: for the first ``key: value`` that is not > 0."""
    for key, value in values.items():
        if not value > 0:
            raise ValueError(f"{key}={value} must be positive.")


def require_range(key: str, value: float, low: float = -math.inf, high: float = math.inf, *,
                  low_open: bool = False, high_open: bool = False, hint: str = "") -> None:
    """``value`` must be finite (unless a bound is infinite) and lie in the interval; ``hint`` ends the message.

    :raises ValueError: naming the key, the value and the interval.
    """
    above = value > low if low_open else value >= low
    below = value < high if high_open else value <= high
    if not (above and below) or math.isnan(value):
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{key}={value} must lie in {interval}{f' ({hint})' if hint else ''}.")


def require_nonnegative(values: Mapping[str, float]) -> None:
    """:raises ValueError: for the first ``key: value`` that is negative or not finite."""
    for key, value in values.items():
        if not (value >= 0 and math.isfinite(value)):
            raise ValueError(f"{key}={value} must be a finite number >= 0.")


def require_number(key: str, value: object, *, integer: bool = False) -> float:
    """``value`` as a float if it is a real number (an int or float, Python's or numpy's; ``integer``: an int only).

    Checked before any comparison, so ``beta="0.05"`` is refused where it is given with its name, not deep inside
    numpy with "'<' not supported between 'str' and 'int'". A bool is refused too (``True`` is an int in Python).

    :raises TypeError: naming the key, the value and its type.
    """
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        want = "an integer" if integer else "a number (an int or a float)"
        raise TypeError(f"{key}={value!r} must be {want}, not a {type(value).__name__}.")
    return float(value)
