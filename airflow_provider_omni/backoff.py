"""Exponential backoff with jitter: the one formula behind the hook's retries and a wait's re-polls."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable


def jittered_backoff(
    attempt: int, *, base: float, cap: float, rng: Callable[[], float] = random.random
) -> float:
    """Return ``base * 2**attempt`` (``attempt`` from 0) capped at ``cap``, of which a random half is
    jitter: a value between half the ceiling and the ceiling."""
    ceiling = min(cap, base * 2 ** max(attempt, 0))
    return ceiling / 2 + rng() * ceiling / 2
