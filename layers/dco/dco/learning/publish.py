"""What every stats publication does after the counts are in: drop old epochs of discounted sums, refit the models. The
publish-stats Lambda (dco.aws.stats_store) and ``dco simulate`` both publish through :func:`refresh`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dco.learning.contract import KEEP_EPOCHS, prune_epochs
from dco.learning.model import (
    KeyParser,
    _build_patterns_np,
    build_patterns,
    fit_models,
    indexed_rows,
    prune_indexed,
    use_numpy,
)
from dco.learning.params import DEFAULT_PARAMS, LearningParams

__all__ = ["refresh"]


def refresh(
    obj: dict[str, Any],
    previous: Mapping[str, Any] | None,
    now: int,
    *,
    params: LearningParams = DEFAULT_PARAMS,
    parser: KeyParser | None = None,
    accelerated: bool | None = None,
) -> dict[str, Any]:
    """Prune ``obj``'s discounted-sum rows to the newest :data:`KEEP_EPOCHS` and set its ``models`` from its
    ``contexts`` counters (warm-started from ``previous``, the object published before, whose counts also tell
    the outcomes that came in since). ``accelerated``: :func:`dco.learning.model.use_numpy`. Returns ``obj``."""
    parser = parser or KeyParser()
    rows = obj.setdefault("contexts", {})
    if use_numpy(accelerated):  # the rows indexed once, pruned and fitted on the same arrays
        indexed = prune_indexed(rows, indexed_rows(rows, parser), KEEP_EPOCHS)
        patterns = _build_patterns_np(indexed, now, params, parser)
    else:
        prune_epochs(obj, KEEP_EPOCHS)
        patterns = build_patterns(rows, now, params, parser, accelerated=False)
    obj["models"] = fit_models(
        rows,
        now,
        previous=(previous or {}).get("models") or None,
        previous_rows=(previous or {}).get("contexts") if previous else None,
        params=params,
        parser=parser,
        patterns=patterns,
    )
    return obj
