"""Split tests: the landing's variants and their weights, and a new journey's draw."""

from __future__ import annotations

import math
import random
import re
from bisect import bisect
from collections.abc import Callable, Mapping
from itertools import accumulate

# URL-safe and short: a name goes in URLs (?variant=b), the journey cookie
# (after a "~") and template file names (index_{variant}.html).
VARIANT_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")


class Variants:
    """The variants of a split test, each with its weight, validated at start-up.

    :param weights: variant name -> weight, a positive number; a variant is
        drawn with probability weight ÷ the sum of the weights. The first
        variant is the one crawlers and prefetches see.
    :raises ValueError: no variants, a name that is not 1 to 32 of
        ``A-Z a-z 0-9 _ -``, or a weight that is not a positive finite number.
    """

    __slots__ = ("_bounds", "_names", "_total", "first", "weights")

    def __init__(self, weights: Mapping[str, float]) -> None:
        if not weights:
            raise ValueError("needs at least one variant")
        for name, weight in weights.items():
            if not isinstance(name, str) or not VARIANT_NAME.fullmatch(name):
                raise ValueError(
                    f"variant name {name!r} must be 1 to 32 letters, digits, '_' or '-'"
                )
            if (
                isinstance(weight, bool)
                or not isinstance(weight, int | float)
                or not math.isfinite(weight)
                or weight <= 0
            ):
                raise ValueError(f"the weight of variant {name!r} must be a positive number")
        self.weights = dict(weights)
        self._names = tuple(self.weights)
        self.first = self._names[0]
        self._bounds = list(accumulate(self.weights.values()))
        self._total = self._bounds[-1]

    def draw(self, uniform: Callable[[], float] = random.random) -> str:
        """A variant drawn by weight; ``uniform()`` is a number in [0, 1).

        The default is the ``random`` module's generator, which a forked worker
        reseeds: workers do not draw the same sequence.
        """
        names = self._names
        # min(): a float sum's rounding must never step past the last variant.
        return names[min(bisect(self._bounds, uniform() * self._total), len(names) - 1)]

    def known(self, name: str | None) -> str | None:
        """``name`` if it is one of the variants, else None."""
        return name if name in self.weights else None
