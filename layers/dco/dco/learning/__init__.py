"""The learner: what is counted, the model fitted from the counts, and the Thompson sampling that chooses an
assembled creative's variants (docs/learning.md).

Rooms::

    contract   counter keys, the fold's discounted sums, the stats object's sections and version, pruning
               (imported by fold, publish-stats, the simulator and reports)
    context    the learning context of a request (the campaign's learning dimensions)
    params     LearningParams: the model's named, validated parameters
    model      the Bayesian logistic model and its fit (publish-stats runs it after every merge)
    draws      decision tables: counter-based posterior draws, hill-climbing over combinations
    policy     choose (the model), choose_per_arm and choose_per_slot (reference learners)
    view       StatsView: what the learner reads from the stats

Data flow::

    beacon ──> fold: contract.counter_keys ──> Counters (ctx:<combination>@<context>, discounted sums in the item)
           ──> publish-stats: merge by maximum, contract.prune_epochs, model.fit_models ──> stats["models"]
           ──> decide: policy.choose ──> draws.build_table (once per stats refresh) ──> one row per decision
"""

from __future__ import annotations

from dco.learning.context import DEFAULT_DIMENSIONS, daypart, is_dimension, learning_context, model_context
from dco.learning.contract import (
    DECAY_SUFFIX,
    KEEP_EPOCHS,
    RECENT_HALF_LIFE_S,
    STATS_VERSION,
    context_key,
    counter_keys,
    decay_stamp,
    parse_context_key,
    prune_epochs,
)
from dco.learning.model import KeyParser, fit_models
from dco.learning.params import DEFAULT_PARAMS, LearningParams
from dco.learning.policy import Assembly, choose, choose_per_arm, choose_per_slot
from dco.learning.view import StatsView

__all__ = [
    "Assembly",
    "DECAY_SUFFIX",
    "DEFAULT_DIMENSIONS",
    "DEFAULT_PARAMS",
    "KEEP_EPOCHS",
    "KeyParser",
    "LearningParams",
    "RECENT_HALF_LIFE_S",
    "STATS_VERSION",
    "StatsView",
    "choose",
    "choose_per_arm",
    "choose_per_slot",
    "combination_arm",
    "context_key",
    "counter_keys",
    "daypart",
    "decay_stamp",
    "fit_models",
    "is_dimension",
    "learning_context",
    "model_context",
    "parse_context_key",
    "prune_epochs",
]


def combination_arm(creative: str, variant_ids: tuple[str, ...] | list[str]) -> str:
    """The arm key of an assembled combination: ``<creative>|<variant ids in slot order, dot-separated>``."""
    return f"{creative}|" + ".".join(variant_ids)
