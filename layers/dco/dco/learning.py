"""What is counted, and how the counts feed the optimizer.

Two halves of one contract:

* :func:`counter_keys` says which counters one event increments (the fold function calls it for every event
  it aggregates): the arm, the creative-level arm of dynamic and assembled creatives, every component variant
  alone and per context value (region, device...), and the holdout/optimized split used for lift.
* :func:`slot_counts` turns the published stats into per-variant ``(successes, trials)`` for the engine's
  component-level Thompson step.

Counter keys (the ``pk`` suffix in the Counters table, see docs/storage.md)::

    arm:<arm key>                                   e.g. arm:cr-retail|h01.img07.c02.o01, arm:cr-product|SKU-1
    arm:<creative id>                               the creative-level arm (dynamic/assembled only)
    comp:<creative>|<slot>=<variant>                one component variant, all traffic
    comp:<creative>|<slot>=<variant>@<dim>=<value>  one component variant within one context value
    split:<holdout|optimized>                       all traffic of the campaign, by group (lift)

The stats object publish-stats writes maps them back: ``arms`` (``arm:`` keys without the prefix),
``components`` (``comp:`` keys without the prefix) and ``splits``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

# Context dimensions that component counters are split by (request signal -> short name in keys).
CONTEXT_DIMENSIONS: dict[str, str] = {"geo.region": "region", "device.type": "device"}


def component_key(creative: str, slot: str, variant: str, context: tuple[str, str] | None = None) -> str:
    """``<creative>|<slot>=<variant>`` or, within a context value, ``...@<dim>=<value>``."""
    key = f"{creative}|{slot}={variant}"
    return key if context is None else f"{key}@{context[0]}={context[1]}"


def event_context(signals: Mapping[str, str]) -> dict[str, str]:
    """The context values an event records for component counters (``{"region": "pnw", "device": "mobile"}``)."""
    return {short: signals[name] for name, short in CONTEXT_DIMENSIONS.items() if signals.get(name)}


def counter_keys(
    *,
    arm: str,
    creative: str,
    variants: Sequence[str] = (),
    context: Mapping[str, str] | None = None,
    holdout: bool = False,
) -> list[str]:
    """Every counter one event of a decision increments (without the campaign prefix).

    ``variants`` are ``"slot=variant"`` strings as carried in tracking tokens; ``context`` is
    :func:`event_context` of the request. Holdout traffic is counted for lift (``split:holdout``) and per arm,
    but not into component counters: the optimizer learns from the traffic it steers, and the holdout's
    uniform traffic stays a clean control group.
    """
    keys = [f"arm:{arm}"]
    if arm != creative:
        keys.append(f"arm:{creative}")
    keys.append("split:holdout" if holdout else "split:optimized")
    if not holdout:
        for item in variants:
            slot, _, variant = item.partition("=")
            keys.append(f"comp:{component_key(creative, slot, variant)}")
            for dim, value in sorted((context or {}).items()):
                keys.append(f"comp:{component_key(creative, slot, variant, (dim, value))}")
    return keys


def slot_counts(
    stats: Any, creative: str, slot: str, variants: Sequence[str], signals: Mapping[str, str], objective: str
) -> tuple[list[float], list[float]]:
    """Per-variant ``(successes, trials)`` for the component-level Thompson step.

    Uses the variant's counts overall (shared across every combination it appears in). ``signals`` is accepted
    so context-conditioned estimates can use the per-context counters.
    """
    successes: list[float] = []
    trials: list[float] = []
    for variant in variants:
        row = stats.component(component_key(creative, slot, variant))
        hits = row.clicks if objective == "click" else row.conversions
        successes.append(float(min(hits, row.impressions)))
        trials.append(float(row.impressions))
    return successes, trials
