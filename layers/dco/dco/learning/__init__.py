"""The learner: what is counted, the model fitted from the counts, and the Thompson sampling that chooses an
assembled creative's variants (docs/learning.md).

Rooms::

    contract   counter keys, the fold's time buckets, the stats object's sections and version, bucket pruning
               (imported by fold, publish-stats, the simulator and reports)
    context    the learning context of a request (the campaign's learning dimensions)
    params     LearningParams: the model's named, validated parameters
    model      the Bayesian logistic model and its fit (publish-stats runs it after every merge)
    draws      decision tables: counter-based posterior draws, hill-climbing over combinations
    policy     choose (the model), choose_per_arm and choose_per_slot (reference learners)
    view       StatsView: what the learner reads from the stats

Data flow::

    beacon ──> fold: contract.counter_keys ──> Counters (ctx:<combination>@<context>, daily buckets in the item)
           ──> publish-stats: merge by maximum, contract.prune_buckets, model.fit_models ──> stats["models"]
           ──> decide: policy.choose ──> draws.build_table (once per stats refresh) ──> one row per decision
"""

from __future__ import annotations

from dco.learning.context import DEFAULT_DIMENSIONS, daypart, is_dimension, learning_context, model_context
from dco.learning.contract import (
    BUCKET_S,
    BUCKET_SUFFIX,
    KEEP_BUCKETS,
    PUBLISHED_BUCKETS,
    STATS_VERSION,
    bucket_of,
    context_key,
    counter_keys,
    parse_context_key,
    prune_buckets,
)
from dco.learning.model import KeyParser, fit_models
from dco.learning.params import DEFAULT_PARAMS, LearningParams
from dco.learning.policy import Assembly, choose, choose_per_arm, choose_per_slot
from dco.learning.view import StatsView

__all__ = [
    "Assembly",
    "BUCKET_S",
    "BUCKET_SUFFIX",
    "DEFAULT_DIMENSIONS",
    "DEFAULT_PARAMS",
    "KEEP_BUCKETS",
    "KeyParser",
    "LearningParams",
    "PUBLISHED_BUCKETS",
    "STATS_VERSION",
    "StatsView",
    "bucket_of",
    "choose",
    "choose_per_arm",
    "choose_per_slot",
    "combination_arm",
    "context_key",
    "counter_keys",
    "daypart",
    "fit_models",
    "is_dimension",
    "learning_context",
    "model_context",
    "parse_context_key",
    "prune_buckets",
]


def combination_arm(creative: str, variant_ids: tuple[str, ...] | list[str]) -> str:
    """The arm key of an assembled combination: ``<creative>|<variant ids in slot order, dot-separated>``."""
    return f"{creative}|" + ".".join(variant_ids)
