"""The learner's parameters: named, validated, documented (docs/learning.md, "Parameters").

None of them is tuned per scenario; each states an assumption of the model or a cost bound, and the defaults are
what docs/learning.md's suite figures were measured with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

__all__ = ["LearningParams", "DEFAULT_PARAMS", "SCALE_GRID"]

# The prior scale grid of every effect group (logit): a point mass at 0 (no effect) and slabs from 0.05 to 1.6.
# An effect's prior is a mixture over this grid with the group's weights (learned from the data). The grid spans
# what creative components do to a click rate: 0.05 logit is +5 %, 1.6 logit about x5.
SCALE_GRID: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6)


@dataclass(frozen=True)
class LearningParams:
    """Parameters of the model (dco.learning.model) and of its draws (dco.learning.draws).

    ``null_weight``: pseudo-effects on the no-effect component of a group's mixture prior, per effect of the group
    (the rest of the grid has one each): a group is presumed to hold only a few effects, however many it could
    hold (effect sparsity), so an effect its data say nothing about is nearly surely nothing.
    ``switches_per_day``: the learner mixes a model of all evidence and a model of time-discounted evidence (weight
    ``0.5 ** (age / half-life)``, the half-life :data:`dco.learning.contract.RECENT_HALF_LIFE_S` that the fold's
    discounted sums are kept with) by how well each predicted the outcomes that came in since the previous
    publication (Bayes' rule on their beta-binomial predictive likelihoods); between publications a share
    ``1 - exp(-switches_per_day * days)`` of the weight is spread evenly: the prior rate at which the better memory
    changes (fixed share, Herbster & Warmuth 1998), so the mixture can move back.
    ``cold_sweeps`` / ``warm_sweeps``: backfitting sweeps of a fit from nothing / from the previous publication's.
    ``recent_scale_floor``: the smallest prior scale of the recent memory (logit): there, no effect is known to be
    exactly nothing (a world that changes can move any effect), so a variant the evidence found worthless keeps a
    spread and is tried now and then; the all-evidence memory keeps a point mass at 0 (a group without signal costs
    nothing there).
    ``pool``: Thompson draws per decision table (a table per creative, context and eligible set, rebuilt at each
    stats refresh); a decision picks one row, and its propensity is the share of rows with its winner.
    ``climb_sweeps``: the most coordinate sweeps of the hill-climb that maximizes a draw over combinations.
    ``scale_grid``: the prior scale grid (:data:`SCALE_GRID`).
    """

    null_weight: float = 1.0
    switches_per_day: float = 1.0
    cold_sweeps: int = 30
    warm_sweeps: int = 4
    recent_scale_floor: float = 0.03
    pool: int = 256
    climb_sweeps: int = 5
    scale_grid: tuple[float, ...] = field(default=SCALE_GRID)

    def __post_init__(self) -> None:
        errors = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "scale_grid":
                if (not isinstance(value, tuple) or len(value) < 2 or value[0] < 0.0
                        or any(not isinstance(x, float) or not math.isfinite(x) for x in value)
                        or any(b <= a for a, b in zip(value, value[1:], strict=False))):
                    errors.append("scale_grid must be a tuple of increasing non-negative floats")
            elif f.type in ("int",):
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    errors.append(f"{f.name} must be a whole number >= 1, got {value!r}")
            elif isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                errors.append(f"{f.name} must be a finite number, got {value!r}")
        if not errors:
            if self.null_weight <= 0.0:
                errors.append(f"null_weight must be > 0, got {self.null_weight!r}")
            if not 0.0 < self.switches_per_day <= 100.0:
                errors.append(f"switches_per_day must be in (0, 100], got {self.switches_per_day!r}")
            if self.pool > 65_536:
                errors.append(f"pool must be <= 65536, got {self.pool!r}")
        if errors:
            raise ValueError("; ".join(errors))


DEFAULT_PARAMS = LearningParams()
