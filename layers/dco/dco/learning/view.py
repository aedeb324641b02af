"""What the learner reads from the stats: a named interface instead of ``Any`` (dco.stats.StatsTable implements
it; tests pass small fakes)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

__all__ = ["StatsView"]


class StatsView(Protocol):
    """The published stats as the learner sees them.

    ``updated_at`` seeds the decision tables (the same object gives the same tables everywhere); ``memo`` holds
    what is derived from this object (model views, decision tables) and dies with it.
    """

    updated_at: int
    memo: dict[Any, Any]

    def model(self, creative: str, objective: str) -> Mapping[str, Any] | None:
        """The published model of a creative for an objective (dco.learning.model), None before the first."""

    def context_rows(self) -> Mapping[str, Sequence[Any]]:
        """The ``contexts`` section: absolute rows and their ``#e<bucket>`` rows."""
