"""``dco simulate``: play a scenario against the real engine, in-process, and measure how fast it learns.

Data flow::

    scenario JSON ──> Truth (click probability per context x combination, per drift phase; oracle and random CTRs
                      in closed form)
                 ──> campaign dict (examples/retail with the scenario's slots on its assembled creative, or one
                      generated: one assembled creative, a tree node per region, holdout 0.1)
                 ──> snapshot (dco.snapshot.build_snapshot) ──> dco.engine.Engine
    per impression:  context ~ scenario, viewer ~ a pool per context (holdout is per viewer)
                     ──> Engine.decide(AdRequest, StatsTable, seed) ──> click ~ Bernoulli(truth)
                     ──> batch[(combination, context, holdout)] += (1, click)
    every stats_refresh impressions (the serverless lag):
                     batch ──> dco.learning.contract.counter_keys per distinct event (the fold's keys, the
                     ctx: counters' discounted sums at the window's time) ──> absolute counters ──> a publication
                     as publish-stats makes it (dco.learning.publish.refresh: prune, refit the models)
                     ──> StatsTable.from_trusted ──> the next decisions
    with --workers N: the impressions of each window are played by N forked processes (each context by one of
                     them), each with a replica of the counters fed the same batches; the outcomes are merged in
                     impression order before the next publication, so the results are the same for any N

Scenario file (see examples/scenarios/*.json)::

    {"name": "...", "impressions": 200000,
     "contexts": {"region": {"pnw": 0.2, ...}, "device": {"mobile": 0.6, "desktop": 0.4}},
     "slots": {"image": ["img01", ...], "headline": [...], "cta": [...]},
     "truth": {"base_logit": -4.6, "terms": [{"when": {"image": "img07", "region": "pnw"}, "logit": 0.8}, ...]},
     "drift": [{"at": 0.5, "terms": [...]}],              # replaces the terms from that fraction of the run on
     "stats_refresh": 1000,                               # impressions between stats publications
     "impressions_per_day": 50000,                        # simulated clock (the recent memory's half-life)
     "campaign": "examples/retail/campaign.yaml", "creative": "cr-retail", "experience": "retail-main"}

Context keys become request signals: ``region`` -> ``geo.region``, ``device`` -> ``device.type``, anything else
-> ``context.<key>``. Policies: ``dco`` (the product default, component-level), ``per-arm-ts`` (one Beta per full
combination per region), ``random`` (the group's rotation set to random).

Metrics (all but ``all_traffic_ctr``/``holdout_ctr`` are over the traffic the policy steers, i.e. without the
holdout, whose uniform rotation is the same under every policy):

* ``ctr`` realized clicks / impressions; ``expected_ctr`` the mean true click probability of what was served;
* ``tail_ctr`` realized CTR over the last 10 % of the impressions;
* ``oracle_ctr`` the best combination per context, averaged over contexts (by probability) and drift phases
  (by their share of the run); ``random_ctr`` the mean over all combinations, likewise (closed form);
* ``regret`` expected clicks lost to the oracle: ``sum(p_best - p_served)``;
* ``impressions_to_90pct_oracle``: a moving window of ``W = min(10,000, max(500, N / 20))`` steered impressions;
  the ratio ``sum(p_served) / sum(p_best)`` over the window (expected CTRs, so click noise does not decide it);
  the first impression count (all traffic) after which the ratio stays >= 0.9 to the end of the run; null if
  it ends below. ``recovery`` gives, per drift change, the same count measured from the change.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import copy
import csv
import gc
import hashlib
import itertools
import json
import math
import multiprocessing
import os
import signal
import sys
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SCENARIO_DIR = ROOT / "examples" / "scenarios"
POLICIES = ("dco", "per-arm-ts", "per-slot-ts", "random")
# policy -> the engine's assembly of an assembled creative (random is the group's rotation instead)
ASSEMBLY_OF = {"dco": "model", "per-arm-ts": "per-arm", "per-slot-ts": "per-slot", "random": "model"}
SIGNAL_OF = {"region": "geo.region", "device": "device.type"}
START = datetime(2026, 11, 2, tzinfo=UTC)
VIEWERS_PER_CONTEXT = 2000
PARALLEL_FROM = 50_000  # impressions from which --workers defaults to more than one process
MAX_AUTO_WORKERS = 4


class ScenarioError(ValueError):
    """A scenario file that cannot be played (the message names the field)."""


# ------------------------------------------------------------------------------------------------ scenario


@dataclass(frozen=True)
class Phase:
    start: float  # fraction of the run
    terms: tuple[tuple[tuple[tuple[str, str], ...], float], ...]


@dataclass
class Scenario:
    name: str
    impressions: int
    contexts: dict[str, dict[str, float]]
    slots: dict[str, list[str]]
    base_logit: float
    phases: list[Phase]
    stats_refresh: int = 1000
    impressions_per_day: int = 50_000
    campaign: str | None = None
    creative: str | None = None
    experience: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)


def _terms(items: Any, where: str, names: set[str]) -> tuple[tuple[tuple[tuple[str, str], ...], float], ...]:
    if not isinstance(items, list):
        raise ScenarioError(f"{where} must be a list")
    out = []
    for i, term in enumerate(items):
        when = term.get("when") if isinstance(term, Mapping) else None
        if not isinstance(when, Mapping) or not isinstance(term.get("logit"), int | float):
            raise ScenarioError(f"{where}[{i}] must be {{'when': {{...}}, 'logit': number}}")
        for key in when:
            if key not in names:
                raise ScenarioError(f"{where}[{i}].when: {key!r} is neither a slot nor a context key")
        out.append((tuple(sorted((str(k), str(v)) for k, v in when.items())), float(term["logit"])))
    return tuple(out)


def scenario_from_dict(data: Mapping[str, Any]) -> Scenario:
    """Validate a scenario mapping (``ScenarioError`` names the field)."""
    try:
        contexts = {str(k): {str(v): float(p) for v, p in vals.items()} for k, vals in data.get("contexts", {}).items()}
        slots = {str(k): [str(v) for v in vals] for k, vals in data["slots"].items()}
        truth = data["truth"]
        base = float(truth["base_logit"])
    except (KeyError, AttributeError, TypeError, ValueError) as exc:
        raise ScenarioError(f"scenario needs slots, truth.base_logit and valid contexts ({exc})") from None
    if not slots or any(not v for v in slots.values()):
        raise ScenarioError("slots must name at least one variant per slot")
    for key, dist in contexts.items():
        total = sum(dist.values())
        if not dist or any(p < 0 for p in dist.values()) or abs(total - 1.0) > 1e-6:
            raise ScenarioError(f"contexts.{key} probabilities must be non-negative and sum to 1 (got {total})")
    overlap = set(slots) & set(contexts)
    if overlap:
        raise ScenarioError(f"{sorted(overlap)} are both slots and context keys")
    names = set(slots) | set(contexts)
    phases = [Phase(0.0, _terms(truth.get("terms", []), "truth.terms", names))]
    for i, change in enumerate(data.get("drift", []) or []):
        at = float(change["at"])
        if not phases[-1].start < at < 1.0:
            raise ScenarioError(f"drift[{i}].at must increase within (0, 1)")
        phases.append(Phase(at, _terms(change.get("terms", []), f"drift[{i}].terms", names)))
    return Scenario(
        name=str(data.get("name", "scenario")),
        impressions=int(data.get("impressions", 100_000)),
        contexts=contexts,
        slots=slots,
        base_logit=base,
        phases=phases,
        stats_refresh=int(data.get("stats_refresh", 1000)),
        impressions_per_day=int(data.get("impressions_per_day", 50_000)),
        campaign=data.get("campaign"),
        creative=data.get("creative"),
        experience=data.get("experience"),
        raw=dict(data),
    )


def load_scenario(name_or_path: str) -> Scenario:
    """A scenario by file path or by name (``examples/scenarios/<name>.json``)."""
    path = Path(name_or_path)
    if not path.exists():
        path = SCENARIO_DIR / f"{name_or_path}.json"
    try:
        data = json.loads(path.read_text())
    except OSError:
        known = ", ".join(sorted(p.stem for p in SCENARIO_DIR.glob("*.json")))
        raise ScenarioError(f"no scenario file {name_or_path!r} (named scenarios: {known})") from None
    except json.JSONDecodeError as exc:
        raise ScenarioError(f"{path}: not JSON: {exc}") from None
    return scenario_from_dict(data)


# --------------------------------------------------------------------------------------------------- truth


class Truth:
    """Click probabilities of every (context, combination) per phase, and the closed-form benchmarks.

    Contexts are the cross product of the scenario's context keys (independent), combinations the cross product
    of the slots in scenario order; combination ``j`` has mixed-radix digits = variant positions.
    """

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        keys = list(scenario.contexts)
        self.context_keys = keys
        values = [list(scenario.contexts[k]) for k in keys]
        self.contexts: list[dict[str, str]] = [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values)]
        self.context_probs = np.array(
            [math.prod(scenario.contexts[k][v] for k, v in c.items()) for c in self.contexts] or [1.0]
        )
        if not self.contexts:
            self.contexts = [{}]
        self.slot_names = list(scenario.slots)
        self.variants = [scenario.slots[s] for s in self.slot_names]
        self.shape = tuple(len(v) for v in self.variants)
        self.n_combos = math.prod(self.shape)
        self.combos: list[tuple[str, ...]] = list(itertools.product(*self.variants))
        self.phases = scenario.phases
        self.tables = [self._table(p) for p in scenario.phases]  # (contexts, combos) probabilities
        bounds = [p.start for p in scenario.phases] + [1.0]
        self.shares = [b - a for a, b in itertools.pairwise(bounds)]

    def _table(self, phase: Phase) -> Any:
        logits = np.full((len(self.contexts), self.n_combos), self.scenario.base_logit)
        for when, logit in phase.terms:
            ctx_mask = np.array([all(c.get(k) == v for k, v in when if k in self.scenario.contexts) for c in self.contexts])
            grids = []
            for slot, variants in zip(self.slot_names, self.variants, strict=True):
                wanted = [v for k, v in when if k == slot]
                grids.append(np.array([all(w == x for w in wanted) for x in variants]))
            combo_mask = grids[0]
            for g in grids[1:]:
                combo_mask = np.logical_and.outer(combo_mask, g)
            logits += logit * np.outer(ctx_mask, combo_mask.reshape(-1))
        return 1.0 / (1.0 + np.exp(-logits))

    def phase_at(self, fraction: float) -> int:
        index = 0
        for i, p in enumerate(self.phases):
            if fraction >= p.start:
                index = i
        return index

    def oracle_ctr(self) -> float:
        """Best combination per context, weighted by context probability, then by phase share."""
        return float(sum(s * float(self.context_probs @ t.max(axis=1)) for s, t in zip(self.shares, self.tables, strict=True)))

    def random_ctr(self) -> float:
        """Uniform random combinations (the engine's random rotation: uniform per slot = uniform over combos)."""
        return float(sum(s * float(self.context_probs @ t.mean(axis=1)) for s, t in zip(self.shares, self.tables, strict=True)))

    def signals(self, context: Mapping[str, str]) -> dict[str, str]:
        return {SIGNAL_OF.get(k, f"context.{k}"): v for k, v in context.items()}


# ------------------------------------------------------------------------------------------------ campaign


def _load_yaml_campaign(path: str) -> dict[str, Any]:
    from dco.config import parse_config_text

    p = Path(path)
    if not p.is_absolute():
        p = ROOT / p
    return copy.deepcopy(dict(parse_config_text(p.read_bytes())))


def learning_dimensions(scenario: Scenario) -> list[str]:
    """The learning dimensions of a scenario's campaign: its context keys (``region``, ``device``; any other key is
    a contextual key, ``context.<key>``)."""
    return [k if k in SIGNAL_OF else f"context.{k}" for k in scenario.contexts]


def campaign_for(
    scenario: Scenario, policy: str, *, holdout: float | None = None, with_products: bool = False,
    dims: Sequence[str] | None = None,
) -> tuple[dict[str, Any], str, str]:
    """``(campaign dict, creative id, experience id)`` for a scenario and a policy.

    With ``campaign`` in the scenario: that config, its assembled creative's slots replaced by the scenario's
    (variant content from the config; every scenario variant id must exist there). Variant rules, exclusions
    and (unless ``with_products``) the product feed of that creative are dropped: the scenario's truth is the
    whole world, and it has no notion of eligibility or products. Otherwise a campaign is generated.
    ``random`` sets the rotation of every group to ``random``. The campaign learns in the scenario's context
    dimensions (:func:`learning_dimensions`), or in ``dims`` when given.
    """
    if scenario.campaign:
        data = _load_yaml_campaign(scenario.campaign)
        cid = scenario.creative or next(c["id"] for c in data["creatives"] if c.get("type") == "assembled")
        creative = next((c for c in data["creatives"] if c["id"] == cid), None)
        if creative is None or creative.get("type") != "assembled":
            raise ScenarioError(f"campaign has no assembled creative {cid!r}")
        slots: dict[str, list[dict[str, Any]]] = {}
        for slot, ids in scenario.slots.items():
            known = {v["id"]: v for v in creative.get("slots", {}).get(slot, [])}
            if not known:
                raise ScenarioError(f"slot {slot!r} is not a slot of {cid} (has {sorted(creative.get('slots', {}))})")
            missing = [v for v in ids if v not in known]
            if missing:
                raise ScenarioError(f"slot {slot!r}: variants {missing} are not in {cid}")
            slots[slot] = [{k: v for k, v in known[i].items() if k != "rules"} for i in ids]
        creative["slots"] = slots
        creative.pop("exclusions", None)
        if not with_products:
            creative.pop("products", None)
        experience = scenario.experience or data["experiences"][0]["id"]
    else:
        cid, experience = "cr-sim", "sim-main"
        regions = [r for r in scenario.contexts.get("region", {}) if r]
        data = {
            "id": f"sim-{scenario.name}",
            "name": f"simulated: {scenario.name}",
            "timezone": "UTC",
            "objective": "click",
            "holdout": 0.1,
            "currency": "USD",
            "experiences": [
                {
                    "id": experience,
                    "sizes": ["300x250"],
                    "formats": ["html", "json"],
                    "targeting": "tree",
                    "tree": [{"name": r, "rules": {"geo": {"region": [r]}}, "theme": f"th-{r}"} for r in regions],
                    "else": "th-all",
                }
            ],
            "themes": [{"id": f"th-{r}", "weight": 10, "group": "grp-sim"} for r in regions]
            + [{"id": "th-all", "weight": 1, "group": "grp-sim"}],
            "groups": [{"id": "grp-sim", "rotation": "algo", "creatives": [cid]}],
            "creatives": [
                {
                    "id": cid,
                    "type": "assembled",
                    "template": "banner",
                    "landing_url": "https://shop.example.com/",
                    "slots": {slot: [{"id": v, "text": v} for v in ids] for slot, ids in scenario.slots.items()},
                }
            ],
        }
    if holdout is not None:
        data["holdout"] = holdout
    data["learning"] = {"dimensions": list(learning_dimensions(scenario) if dims is None else dims)}
    if policy == "random":
        for group in data["groups"]:
            group["rotation"] = "random"
            group.pop("weights", None)
    return data, cid, experience


def build_engine(data: Mapping[str, Any], policy: str, params: Any) -> Any:
    from dco.config import campaign_from_dict
    from dco.engine import Engine
    from dco.feed import parse_feed
    from dco.snapshot import build_snapshot, load_snapshot

    from dco_local.examples import generate_retail_feed

    campaign = campaign_from_dict(data)
    feed = (ROOT / "examples" / "retail" / "feed.tsv").read_bytes() if "feed" in data else generate_retail_feed(20)
    catalog = parse_feed(feed, campaign.feed, currency=campaign.currency).catalog
    snapshot = load_snapshot(build_snapshot(data, catalog, campaign=campaign))
    return Engine(snapshot, learning_params=params, assembly=ASSEMBLY_OF[policy])


# ------------------------------------------------------------------------------------------------ the run


@dataclass
class RunResult:
    summary: dict[str, Any]
    stats_object: dict[str, Any]


def _moving_ratio_crossing(served: Any, best: Any, window: int) -> int | None:
    """Index (into the arrays) after which the moving ratio stays >= 0.9; None if the last window is below."""
    n = len(served)
    if n < window:
        return None
    cs = np.concatenate(([0.0], np.cumsum(served)))
    cb = np.concatenate(([0.0], np.cumsum(best)))
    ratio = (cs[window:] - cs[:-window]) / np.maximum(cb[window:] - cb[:-window], 1e-300)
    below = np.nonzero(ratio < 0.9)[0]
    if below.size == 0:
        return window - 1
    last = int(below[-1])
    if last == ratio.size - 1:
        return None
    return last + window  # window ending at array index last + window is the first that stays above


class _Counters:
    """The counters a run has published, by stats-object section, and the stats table of the next window.

    ``sections``: ``arms``, ``splits``, ``contexts`` (keys without the ``arm:``/``split:``/``ctx:`` prefix, rows
    ``[impressions, clicks, conversions, value]``; the ``ctx:`` counters also their discounted sums per epoch,
    ``#d<epoch>``, the newest :data:`dco.learning.contract.KEEP_EPOCHS` kept, as the fold and publish-stats keep
    them; a window's events all count at the window's start time). The rows one event of a batch key increments
    are resolved once per key and epoch. A publication is what
    publish-stats does (:func:`dco.learning.publish.refresh`: prune, refit the models, warm from the previous
    publication). With ``--workers`` every worker keeps a replica fed the same batches in the same order, so each
    builds the same stats table for the next window without the table crossing a pipe.
    """

    def __init__(
        self, truth: Truth, params: Any, cid: str, combo_arm: Sequence[str], contexts: Sequence[Mapping[str, str]],
        campaign_id: str, fit: bool = True,
    ) -> None:
        from dco.learning.model import KeyParser

        self.fit = fit  # False: a reference learner plays, the models are not read (nor fitted)
        self.truth = truth
        self.params = params
        self.cid = cid
        self.combo_arm = combo_arm
        self.contexts = contexts
        self.campaign_id = campaign_id
        self.sections: dict[str, dict[str, list[Any]]] = {"arms": {}, "splits": {}, "contexts": {}}
        self.section_of = {"arm": self.sections["arms"], "ctx": self.sections["contexts"],
                           "split": self.sections["splits"]}
        self.by_epoch: dict[int, list[str]] = {}
        self.row_memo: dict[tuple[Any, ...], list[list[Any]]] = {}
        # per batch key: the rows of its counters (they live as long as the run) and the key of its ctx: counter,
        # whose discounted sums are rows per epoch
        self.key_parts: dict[tuple[Any, ...], tuple[list[list[Any]], str | None]] = {}
        self.parser = KeyParser()
        self.published: dict[str, Any] | None = None  # the previous publication (its models and counts)
        self.touched: dict[str, list[Any]] = {}  # contexts rows changed since it: their counts then
        self.seconds = 0.0  # spent publishing (adding the counts, refitting, building the stats tables)

    def rows_of(self, combo: int | None, ci: int, hold: bool, other: str | None, epoch_time: int) -> list[list[Any]]:
        """The counter rows one event of a batch key increments at ``epoch_time``: those of
        :func:`dco.learning.contract.counter_keys` (the fold's keys), resolved once per batch key, then (a steered
        assembled decision) the row of its ``ctx:`` counter's discounted sums in the epoch of ``epoch_time``; rows
        are created on first use."""
        from dco.learning.contract import DECAY_SUFFIX, counter_keys, decay_stamp

        bkey = (combo, ci, hold, other)
        parts = self.key_parts.get(bkey)
        if parts is None:
            if combo is None:
                arm, creative, variants = other, other, ()
            else:
                arm, creative = self.combo_arm[combo], self.cid
                variants = [f"{s}={v}" for s, v in zip(self.truth.slot_names, self.truth.combos[combo], strict=True)]
            fixed: list[list[Any]] = []
            bucketed = None
            for key in counter_keys(arm=arm, creative=creative, variants=variants, context=self.contexts[ci],
                                    holdout=hold):
                prefix, _, rest = key.partition(":")
                section = self.section_of[prefix]
                row = section.get(rest)
                if row is None:
                    row = section[rest] = [0, 0, 0, 0.0]
                fixed.append(row)
                if prefix == "ctx":
                    bucketed = rest
            parts = self.key_parts[bkey] = (fixed, bucketed)
        out = list(parts[0])
        if parts[1] is not None:
            epoch = decay_stamp(epoch_time)[0]
            rest = f"{parts[1]}{DECAY_SUFFIX}{epoch}"
            rows = self.sections["contexts"]
            row = rows.get(rest)
            if row is None:
                row = rows[rest] = [0, 0, 0, 0.0]
                self.by_epoch.setdefault(epoch, []).append(rest)
            out.append(row)
        return out

    def add(self, batch: Mapping[tuple[Any, ...], Sequence[int]], epoch_time: int) -> None:
        """Count one window's batch (batch key -> ``[impressions, clicks, ...]``, in the order the keys were first
        met: new counter rows are made in that order, which fixes the key order of the stats object) at
        ``epoch_time`` (the discounted sums with its weight); then drop the epochs the fold would no longer keep."""
        from dco.learning.contract import KEEP_EPOCHS, decay_stamp

        t0 = time.perf_counter()
        epoch, weight = decay_stamp(epoch_time)
        row_memo = self.row_memo
        contexts = self.sections["contexts"]
        touched = self.touched
        for bkey, counts in batch.items():
            memo_key = (*bkey, epoch)
            rows = row_memo.get(memo_key)
            if rows is None:
                rows = row_memo[memo_key] = self.rows_of(*bkey, epoch_time)
            imps, clicks = counts[0], counts[1]
            ctx_key = self.key_parts[bkey][1]
            if ctx_key is not None:
                if ctx_key not in touched:
                    before = contexts[ctx_key]
                    touched[ctx_key] = [before[0], before[1], before[2], before[3]]
                for row in rows[:-1]:
                    row[0] += imps
                    row[1] += clicks
                decayed = rows[-1]
                decayed[0] += imps * weight
                decayed[1] += clicks * weight
            else:
                for row in rows:
                    row[0] += imps
                    row[1] += clicks
        oldest = epoch - KEEP_EPOCHS + 1
        dropped = False
        for old in [e for e in self.by_epoch if e < oldest]:
            dropped = True
            for rest in self.by_epoch.pop(old):
                del contexts[rest]
        if dropped:  # the memoized rows of older epochs are gone
            for memo_key in [k for k in row_memo if k[-1] < epoch]:
                del row_memo[memo_key]
        self.seconds += time.perf_counter() - t0

    def stats_object(self, epoch_time: int) -> dict[str, Any]:
        """The stats object publish-stats would write (dco.learning.contract's shape), rows copied: the counters
        keep counting."""
        out: dict[str, Any] = {
            "version": 2, "campaign": self.campaign_id, "updated_at": int(epoch_time),
            **{name: {k: [r[0], r[1], r[2], r[3]] for k, r in rows.items()} for name, rows in self.sections.items()},
        }
        out["models"] = (self.published or {}).get("models", {})
        return out

    def table(self, epoch_time: int) -> Any:
        """Publish (:func:`dco.learning.publish.refresh` over the live sections: the models are refitted) and
        return the stats table of the next window.

        The table reads the live sections, not a copy (copying every row cost about a third of a publication):
        the run uses it only until the next :meth:`add`, when the next table takes over, and nothing keeps
        state derived from an old table's rows (the engine's and the learner's caches are per table).
        """
        from dco.learning.publish import refresh
        from dco.stats import StatsTable

        t0 = time.perf_counter()
        obj = {"version": 2, "campaign": self.campaign_id, "updated_at": int(epoch_time), **self.sections}
        previous = None
        if self.published is not None:
            previous = {"models": self.published["models"], "contexts": _Previous(self.sections["contexts"],
                                                                                  self.touched)}
        if self.fit:
            refresh(obj, previous, int(epoch_time), params=self.params, parser=self.parser)
        else:
            obj["models"] = {}
        self.published = {"models": obj["models"]}
        self.touched = {}
        table = StatsTable.from_trusted(obj)
        self.seconds += time.perf_counter() - t0
        return table


class _Previous(Mapping[str, Any]):
    """The ``contexts`` counts of the previous publication: the live rows, except those a batch changed since,
    whose counts then are kept aside (so a publication need not copy every row)."""

    def __init__(self, live: Mapping[str, Any], touched: Mapping[str, Any]) -> None:
        self.live = live
        self.touched = touched

    def __getitem__(self, key: str) -> Any:
        found = self.touched.get(key)
        return found if found is not None else self.live[key]

    def get(self, key: str, default: Any = None) -> Any:
        found = self.touched.get(key)
        return found if found is not None else self.live.get(key, default)

    def __iter__(self) -> Any:
        return iter(self.live)

    def __len__(self) -> int:
        return len(self.live)


class _Played(NamedTuple):
    """What one process decided in one stats window (lists in the order played)."""

    indices: list[int] | None  # the impressions played; None: all of the window, in order
    served: list[float]  # true click probability of what was served
    clicks: list[int]
    holdouts: list[bool]
    batch: dict[tuple[Any, ...], list[int]]  # batch key -> [impressions, clicks, first impression index]
    log: list[tuple[Any, ...]] | None  # decision-log rows (with --log-out)
    costs: dict[int, tuple[int, float]] | None  # per context played: (impressions, seconds), for the balance


class _Player:
    """The per-impression part of a run: decide with the real engine, draw the click, add it to the batch.

    Every decision depends only on the stats table of its window, the request and its own seed (the draw
    tables are seeded from the stats table and their key, whoever builds them first), so the impressions of a
    window can be played in any grouping and order (:meth:`play` with ``contexts``) and give the same decisions
    as one pass in order.
    """

    def __init__(
        self, engine: Any, truth: Truth, cid: str, pools: Sequence[Sequence[Any]], ctx_array: Any,
        viewer_draw: list[int], uniforms: list[float], seed_base: int, phase_changes: Sequence[int], base_p: float,
        log: bool,
    ) -> None:
        self.engine = engine
        self.cid = cid
        self.pools = pools
        self.ctx_array = ctx_array
        self.ctx_draw: list[int] = ctx_array.tolist()
        self.viewer_draw = viewer_draw
        self.uniforms = uniforms
        self.seed_base = seed_base
        self.phase_changes = phase_changes  # the first impression of each drift phase (phase 0 starts at 0)
        self.prob_by_phase = [t.tolist() for t in truth.tables]
        self.base_p = base_p
        self.log = log
        self.combo_index = {
            tuple(zip(truth.slot_names, combo, strict=True)): j for j, combo in enumerate(truth.combos)
        }

    def play(self, stats: Any, lo: int, hi: int, contexts: Sequence[int] | None = None) -> _Played:
        """Decide impressions ``lo`` to ``hi - 1`` on ``stats``: all, in order, or (``contexts`` given) those
        whose context index is in ``contexts``, context by context (each context's draw tables stay at hand,
        and its cost is measured for the next window's balance)."""
        ctx_draw, viewer_draw, uniforms, pools = self.ctx_draw, self.viewer_draw, self.uniforms, self.pools
        indices: list[int] | None = None
        costs: dict[int, tuple[int, float]] | None = None
        blocks: list[tuple[int, Sequence[int]]]
        if contexts is None:
            blocks = [(-1, range(lo, hi))]
        else:
            window = self.ctx_array[lo:hi]
            blocks = [(ci, (np.flatnonzero(window == ci) + lo).tolist()) for ci in contexts]
            indices = [i for _, block in blocks for i in block]
            costs = {}
        changes = self.phase_changes
        never = len(ctx_draw)
        decide = self.engine.decide
        combo_get = self.combo_index.get
        cid, base_p, seed_base = self.cid, self.base_p, self.seed_base
        served: list[float] = []
        clicks: list[int] = []
        holdouts: list[bool] = []
        batch: dict[tuple[Any, ...], list[int]] = {}
        log: list[tuple[Any, ...]] | None = [] if self.log else None
        for block_ci, block in blocks:
            if not block:
                continue
            t0 = time.perf_counter()
            phase = bisect.bisect_right(changes, block[0]) - 1
            next_change = changes[phase + 1] if phase + 1 < len(changes) else never
            probs = self.prob_by_phase[phase]
            for i in block:
                while i >= next_change:  # a context's share of the window can step over more than one change
                    phase += 1
                    probs = self.prob_by_phase[phase]
                    next_change = changes[phase + 1] if phase + 1 < len(changes) else never
                ci = ctx_draw[i]
                d = decide(pools[ci][viewer_draw[i]], stats, seed=seed_base + i)
                combo = combo_get(d.variants) if d.creative == cid else None
                p = base_p if combo is None else probs[ci][combo]
                click = 1 if uniforms[i] < p else 0
                served.append(p)
                clicks.append(click)
                holdouts.append(d.holdout)
                bkey = (combo, ci, d.holdout, None if combo is not None else d.arm)
                row = batch.get(bkey)
                if row is None:  # a key holds one context: met first at its smallest impression
                    batch[bkey] = [1, click, i]
                else:
                    row[0] += 1
                    row[1] += click
                if log is not None:
                    log.append((ci, d.arm, click, d.propensity, d.holdout))
            if costs is not None:
                costs[block_ci] = (len(block), time.perf_counter() - t0)
        return _Played(indices, served, clicks, holdouts, batch, log, costs)


def _phase_changes(truth: Truth, n: int) -> list[int]:
    """The first impression of each drift phase: phase ``k`` starts at ``ceil(start_k * n)``, and at least one
    impression after phase ``k - 1`` (phases whose starts round to the same impression follow one by one)."""
    out: list[int] = []
    for p in truth.phases:
        at = math.ceil(p.start * n)
        out.append(at if not out else max(at, out[-1] + 1))
    return out


def _assign(counts: Sequence[int], per_impression: Mapping[int, float], workers: int) -> list[list[int]]:
    """The context indices each worker plays in one window: the costliest first to the least loaded worker.

    A context's cost is its impressions in the window times its seconds per impression when last played
    (``per_impression``; the mean of the known ones for a context not played yet, 1 for all in the first
    window): a small context builds about as many draw tables as a large one, so it costs more per impression.
    A context is never split: the draw tables (the costly part of a window after the decisions themselves) are
    per context, so each is built by one process only.
    """
    known = [per_impression[ci] for ci in range(len(counts)) if ci in per_impression]
    fallback = sum(known) / len(known) if known else 1.0
    cost = [counts[ci] * per_impression.get(ci, fallback) for ci in range(len(counts))]
    load = [0.0] * workers
    mine: list[list[int]] = [[] for _ in range(workers)]
    for ci in sorted(range(len(counts)), key=lambda c: (-cost[c], c)):
        if counts[ci] == 0:
            continue
        w = min(range(workers), key=lambda k: (load[k], k))
        load[w] += cost[ci]
        mine[w].append(ci)
    return mine


def auto_workers(n: int, contexts: int) -> int:
    """The default ``--workers``: one process for runs under :data:`PARALLEL_FROM` impressions (forking and the
    per-window exchange would cost more than they save) or where ``fork`` is missing; otherwise one per usable
    CPU, at most :data:`MAX_AUTO_WORKERS` and at most one per context (contexts are never split)."""
    if n < PARALLEL_FROM or "fork" not in multiprocessing.get_all_start_methods():
        return 1
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_AUTO_WORKERS, contexts))


def _work(conn: Any, others: Sequence[Any], counters: _Counters, player: _Player, campaign_id: str) -> None:
    """A worker process: per window, count the previous window's batch into its replica of the counters, build
    the stats table, play its share of the impressions and send it back. At the end (a ``stop`` message with the
    last batch) its CPU and publishing seconds, and when asked the final stats object (every replica holds the
    same counts, so the parent keeps none). Errors go back as text (the parent raises them)."""
    from dco.stats import StatsTable

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it ends the workers
    for other in others:  # the parent's ends (when the parent dies, recv() sees EOF instead of waiting forever)
        other.close()  # and the other workers' (when this one dies, the parent sees EOF)
    cpu_start = time.process_time()
    try:
        stats = StatsTable.empty(campaign_id)
        while True:
            try:
                msg = conn.recv()
            except EOFError:  # the parent is gone
                break
            if msg[0] == "stop":
                _, batch, epoch_time, want = msg
                obj = None
                if want:
                    counters.add(batch, epoch_time)
                    obj = counters.stats_object(epoch_time)
                reply: Any = ("done", time.process_time() - cpu_start, counters.seconds, obj)
            else:
                _, batch, epoch_time, lo, hi, contexts = msg
                if batch is not None:
                    counters.add(batch, epoch_time)
                    stats = counters.table(epoch_time)
                reply = player.play(stats, lo, hi, contexts)
            try:
                conn.send(reply)
            except BrokenPipeError:  # the parent is gone
                break
            if msg[0] == "stop":
                break
    except BaseException:  # noqa: BLE001 - anything: the parent must hear of it, not wait
        with contextlib.suppress(OSError):
            conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


class _Pool:
    """``workers`` forked worker processes (see :func:`_work`), each with its end of a pipe; :meth:`close` ends
    them whatever happened (an exception, Ctrl-C in the parent)."""

    def __init__(self, workers: int, counters: _Counters, player: _Player, campaign_id: str) -> None:
        ctx = multiprocessing.get_context("fork")
        pipes = [ctx.Pipe() for _ in range(workers)]
        self.conns = [parent for parent, _ in pipes]
        self.procs: list[Any] = []
        self.cpu_seconds = 0.0
        self.publish_seconds = 0.0
        self.finished = False
        try:
            for k, (_, child) in enumerate(pipes):
                # every other pipe end this child inherits is closed in it, so that EOF reaches whoever waits
                others = self.conns + [c for j, (_, c) in enumerate(pipes) if j != k]
                proc = ctx.Process(
                    target=_work, args=(child, others, counters, player, campaign_id), name=f"dco-simulate-{k}",
                    daemon=True,
                )
                proc.start()
                self.procs.append(proc)
        except BaseException:
            self.close()
            raise
        finally:
            for _, child in pipes:
                child.close()

    def _send(self, k: int, msg: Any) -> None:
        try:
            self.conns[k].send(msg)
        except OSError:  # a worker that died between windows (killed, out of memory)
            self.procs[k].join(timeout=1)
            raise RuntimeError(f"simulate worker {k} exited (code {self.procs[k].exitcode})") from None

    def _recv(self, k: int) -> Any:
        try:
            msg = self.conns[k].recv()
        except EOFError:
            raise RuntimeError(f"simulate worker {k} exited (code {self.procs[k].exitcode})") from None
        if not isinstance(msg, _Played) and msg[0] == "error":
            raise RuntimeError(f"simulate worker {k} failed:\n{msg[1]}")
        return msg

    def send(
        self, batch: dict[tuple[Any, ...], list[int]] | None, epoch_time: int, lo: int, hi: int,
        shares: Sequence[Sequence[int]],
    ) -> None:
        """Start a window: the previous window's batch (None: the first window, empty stats) and each worker's
        share of the contexts."""
        for k, contexts in enumerate(shares):
            self._send(k, ("window", batch, epoch_time, lo, hi, contexts))

    def receive(self) -> list[_Played]:
        return [self._recv(k) for k in range(len(self.conns))]

    def finish(self, batch: dict[tuple[Any, ...], list[int]], epoch_time: int) -> dict[str, Any]:
        """Stop the workers cleanly, collect their CPU and publishing seconds, and the final stats object (the
        first worker's replica, with the last window's ``batch`` counted)."""
        for k in range(len(self.conns)):
            self._send(k, ("stop", batch, epoch_time, k == 0))
        obj: dict[str, Any] = {}
        for k in range(len(self.conns)):
            _, cpu, published, final = self._recv(k)
            self.cpu_seconds += cpu
            self.publish_seconds = max(self.publish_seconds, published)
            obj = final if k == 0 else obj
        self.finished = True
        return obj

    def close(self) -> None:
        """End the workers: after :meth:`finish` they are exiting already; otherwise (an error, Ctrl-C) they may
        be mid-window and are terminated at once."""
        for conn in self.conns:
            conn.close()
        for proc in self.procs:
            if not self.finished:
                proc.terminate()
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join()


def simulate(
    scenario: Scenario,
    policy: str = "dco",
    *,
    impressions: int | None = None,
    seed: int = 1,
    holdout: float | None = None,
    params: Any = None,
    log_out: str | None = None,
    with_products: bool = False,
    progress: bool = False,
    workers: int | None = None,
    dims: Sequence[str] | None = None,
) -> RunResult:
    """Play ``scenario`` with ``policy``; returns the summary (see the module docstring) and the final stats.

    ``workers``: processes that play the impressions of each stats window (None: :func:`auto_workers`); the
    results are the same for any number, only the timing fields differ. ``dims``: the campaign's learning
    dimensions instead of the scenario's context keys.
    """
    from dco import learning
    from dco.device import Device
    from dco.request import AdRequest, Geo
    from dco.stats import StatsTable

    if policy not in POLICIES:
        raise ScenarioError(f"policy must be one of {POLICIES}, got {policy!r}")
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise ScenarioError(f"--workers must be a whole number >= 1, got {workers!r}")
    params = params or learning.DEFAULT_PARAMS
    n = int(impressions or scenario.impressions)
    truth = Truth(scenario)
    data, cid, experience = campaign_for(scenario, policy, holdout=holdout, with_products=with_products, dims=dims)
    engine = build_engine(data, policy, params)
    campaign_id = engine.campaign.id

    rnd = np.random.default_rng(seed)
    ctx_array = rnd.choice(len(truth.contexts), size=n, p=truth.context_probs / truth.context_probs.sum())
    viewer_draw = rnd.integers(VIEWERS_PER_CONTEXT, size=n).tolist()
    uniforms = rnd.random(n).tolist()
    seed_base = int.from_bytes(hashlib.blake2b(f"sim{seed}".encode(), digest_size=6).digest(), "big") << 20

    pools: list[list[Any]] = []
    contexts = []
    for ci, ctx in enumerate(truth.contexts):
        geo = Geo(country="US", region=ctx.get("region"))
        device = Device(type=ctx.get("device", "desktop") or "")
        extra = {k: v for k, v in ctx.items() if k not in SIGNAL_OF}
        pools.append(
            [
                AdRequest(experience, START, geo=geo, device=device, context=extra, user_id=f"s{seed}c{ci}v{j}")
                for j in range(VIEWERS_PER_CONTEXT)
            ]
        )
        contexts.append(engine.learning_context(pools[-1][0]))

    combo_arm = [learning.combination_arm(cid, combo) for combo in truth.combos]
    base_p = 1.0 / (1.0 + math.exp(-scenario.base_logit))
    phase_starts = [math.ceil(p.start * n) for p in truth.phases]
    changes = _phase_changes(truth, n)
    seconds_per_impression = 86400.0 / scenario.impressions_per_day
    start_s = int(START.timestamp())
    refresh = max(1, scenario.stats_refresh)
    counters = _Counters(truth, params, cid, combo_arm, contexts, campaign_id, fit=policy == "dco")
    player = _Player(engine, truth, cid, pools, ctx_array, viewer_draw, uniforms, seed_base, changes, base_p,
                     log_out is not None)
    if workers is None:
        workers = auto_workers(n, len(truth.contexts))
    elif workers > 1 and "fork" not in multiprocessing.get_all_start_methods():
        raise ScenarioError(f"--workers {workers} needs the fork start method, which this platform lacks: use 1")
    # contexts are never split, so more workers than contexts would only idle (and keep a counter replica each)
    workers = min(workers, len(truth.contexts))
    if n <= refresh:  # one window: nothing to share out
        workers = 1

    served_p = np.empty(n, dtype=float)
    clicked = np.empty(n, dtype=np.int8)
    is_holdout = np.empty(n, dtype=bool)
    log_rows: list[tuple[Any, ...]] | None = [] if log_out else None
    # The run keeps hundreds of thousands of counter rows alive and allocates more at every publication: with
    # the default thresholds the collector's passes over the young generations cost about a tenth of the run.
    gc_thresholds = gc.get_threshold()
    gc.set_threshold(max(gc_thresholds[0], 50_000), *(max(t, 20) for t in gc_thresholds[1:]))
    pool: _Pool | None = None
    t_start = time.perf_counter()
    cpu_start = time.process_time()
    try:
        if workers > 1:
            # the run's objects (pools of requests, the engine, the truth) go to the permanent generation: the
            # workers' collections then never walk them, nor copy the pages their reference counts are on
            gc.freeze()
            pool = _Pool(workers, counters, player, campaign_id)
        stats = StatsTable.empty(campaign_id)
        batch: dict[tuple[Any, ...], list[int]] | None = None  # the previous window's, not counted yet
        per_impression: dict[int, float] = {}  # per context: seconds per impression when last played
        window_start_time = epoch_time = start_s
        for lo in range(0, n, refresh):
            hi = min(lo + refresh, n)
            if lo:
                epoch_time = window_start_time
                window_start_time = start_s + int(lo * seconds_per_impression)
                if progress and lo % (refresh * 50) == 0:
                    print(f"  {lo:,} impressions, {lo / (time.perf_counter() - t_start):,.0f}/s", file=sys.stderr, flush=True)
            if pool is None:
                if batch is not None:
                    counters.add(batch, epoch_time)
                    stats = counters.table(epoch_time)
                played = [player.play(stats, lo, hi)]
            else:
                counts = np.bincount(ctx_array[lo:hi], minlength=len(truth.contexts)).tolist()
                pool.send(batch, epoch_time, lo, hi, _assign(counts, per_impression, workers))
                played = pool.receive()
            batch = {}
            for part in played:
                at: Any = slice(lo, hi) if part.indices is None else np.asarray(part.indices, dtype=np.intp)
                served_p[at] = part.served
                clicked[at] = part.clicks
                is_holdout[at] = part.holdouts
                batch.update(part.batch)
                if part.costs:
                    per_impression.update({ci: s / max(k, 1) for ci, (k, s) in part.costs.items()})
                if log_rows is not None and part.log is not None:
                    log_rows.extend(zip(range(lo, hi) if part.indices is None else part.indices, part.log, strict=True))
            if pool is not None:  # the batch keys in the order a single pass meets them (the stats' key order)
                batch = dict(sorted(batch.items(), key=lambda item: item[1][2]))
        if pool is not None:
            obj = pool.finish(batch or {}, window_start_time)
        else:
            counters.add(batch or {}, window_start_time)
            obj = counters.stats_object(window_start_time)
    finally:
        gc.set_threshold(*gc_thresholds)
        if workers > 1:
            gc.unfreeze()
        if pool is not None:
            pool.close()
    elapsed = time.perf_counter() - t_start
    cpu = time.process_time() - cpu_start + (pool.cpu_seconds if pool is not None else 0.0)
    refresh_seconds = counters.seconds if pool is None else pool.publish_seconds
    if log_rows is not None:
        log_rows = [row for _, row in sorted(log_rows, key=lambda item: item[0])] if workers > 1 else [r for _, r in log_rows]
    phase_of = np.searchsorted(np.asarray(changes), np.arange(n), side="right") - 1
    best_p = np.asarray([t.max(axis=1).tolist() for t in truth.tables], dtype=float)[phase_of, ctx_array]

    steer = ~is_holdout
    idx = np.nonzero(steer)[0]
    window = min(10_000, max(500, n // 20))
    cross = _moving_ratio_crossing(served_p[idx], best_p[idx], window)
    tail = idx[idx >= n - n // 10]
    oracle = truth.oracle_ctr()
    rand = truth.random_ctr()
    imps_steer = int(steer.sum())
    clicks_steer = int(clicked[steer].sum())
    from dco_local.evaluate import ratio_lift

    hold_imps = int(is_holdout.sum())
    hold_clicks = int(clicked[is_holdout].sum())
    summary: dict[str, Any] = {
        "scenario": scenario.name,
        "policy": policy,
        "seed": seed,
        "impressions": n,
        "steered_impressions": imps_steer,
        "clicks": clicks_steer,
        "ctr": clicks_steer / imps_steer if imps_steer else None,
        "expected_ctr": float(served_p[steer].mean()) if imps_steer else None,
        "tail_ctr": float(clicked[tail].mean()) if tail.size else None,
        "tail_expected_ctr": float(served_p[tail].mean()) if tail.size else None,
        "oracle_ctr": oracle,
        "random_ctr": rand,
        "regret": float((best_p[steer] - served_p[steer]).sum()),
        "impressions_to_90pct_oracle": None if cross is None else int(idx[cross]) + 1,
        "window": window,
        "all_traffic_ctr": float(clicked.mean()),
        "holdout_impressions": hold_imps,
        "holdout_ctr": hold_clicks / hold_imps if hold_imps else None,
        "lift": ratio_lift(clicks_steer, imps_steer, hold_clicks, hold_imps),
        "stats_refresh": refresh,
        "seconds": round(elapsed, 2),
        "impressions_per_second": round(n / elapsed),
        "cpu_seconds": round(cpu, 2),
        "impressions_per_cpu_second": round(n / cpu) if cpu > 0 else None,
        "publish_seconds": round(refresh_seconds, 2),
        "workers": workers,
        "engine": "numpy" if _engine_accelerated() else "pure-python",
    }
    summary["ctr_over_random"] = summary["ctr"] / rand if summary["ctr"] is not None else None
    summary["ctr_over_oracle"] = summary["ctr"] / oracle if summary["ctr"] is not None else None
    summary["tail_over_oracle"] = summary["tail_ctr"] / oracle if summary["tail_ctr"] is not None else None
    # the same shares from the true click probabilities of what was served (no click noise: what the suite reads)
    summary["share_of_oracle"] = _share(served_p, best_p, idx)
    summary["tail_share_of_oracle"] = _share(served_p, best_p, tail)
    summary["random_share_of_oracle"] = rand / oracle if oracle > 0 else None
    if len(truth.phases) > 1:
        recovery = []
        for k, start in enumerate(phase_starts[1:], start=1):
            end = phase_starts[k + 1] if k + 1 < len(phase_starts) else n
            sub = idx[(idx >= start) & (idx < end)]
            sub_all = idx[idx < end]
            c = _moving_ratio_crossing(served_p[sub_all], best_p[sub_all], window)
            if c is not None and int(sub_all[c]) < start:  # never dipped after the change
                c_count = 0
            else:
                c_count = None if c is None else int(sub_all[c]) + 1 - start
            p_oracle = float(truth.context_probs @ truth.tables[k].max(axis=1))
            sub_tail = sub[sub >= end - (end - start) // 10]
            recovery.append(
                {
                    "at": start,
                    "recovery_impressions": c_count,
                    "phase_oracle_ctr": p_oracle,
                    "phase_expected_ctr": float(served_p[sub].mean()) if sub.size else None,
                    "phase_share_of_oracle": _share(served_p, best_p, sub),
                    "phase_tail_share_of_oracle": _share(served_p, best_p, sub_tail),
                }
            )
        summary["recovery"] = recovery
    if log_out and log_rows is not None:
        write_log(log_out, truth, log_rows)
    return RunResult(summary, obj)


def _engine_accelerated() -> bool:
    from dco._accel import np as engine_np

    return engine_np is not None


def _share(served: Any, best: Any, at: Any) -> float | None:
    """The sum of the true click probabilities of what was served at ``at`` over the oracle's there."""
    if not len(at):
        return None
    total = float(best[at].sum())
    return float(served[at].sum()) / total if total > 0 else None


def write_log(path: str, truth: Truth, rows: Sequence[tuple[Any, ...]]) -> None:
    """The decision log in the logged-bandit CSV format of ``dco evaluate`` (ctx_*, action, reward, propensity)."""
    keys = truth.context_keys
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([f"ctx_{k}" for k in keys] + ["action", "reward", "propensity", "holdout"])
        for ci, arm, reward, propensity, hold in rows:
            ctx = truth.contexts[ci]
            w.writerow([ctx.get(k, "") for k in keys] + [arm, reward, f"{propensity:.6g}", int(hold)])


def write_stats(path: str, obj: Mapping[str, Any]) -> None:
    """The final stats object, msgpack when the name ends in .msgpack/.mpk, JSON otherwise."""
    if path.endswith((".msgpack", ".mpk")):
        import msgpack

        Path(path).write_bytes(msgpack.packb(obj, use_bin_type=True))
    else:
        Path(path).write_text(json.dumps(obj, sort_keys=True))


# ------------------------------------------------------------------------------------------------ CLI


def cmd_simulate(args: argparse.Namespace) -> int:
    if args.suite:
        from dco_local.suite import cmd_suite

        return cmd_suite(args)
    if not args.scenario:
        print("dco: simulate needs --scenario FILE|NAME or --suite DIR", file=sys.stderr)
        return 2
    try:
        scenario = load_scenario(args.scenario)
        if args.stats_refresh:
            scenario.stats_refresh = args.stats_refresh
        dims = None if args.dims is None else [d for d in args.dims.split(",") if d]
        result = simulate(
            scenario, args.policy, impressions=args.impressions, seed=args.seed, holdout=args.holdout,
            log_out=args.log_out, with_products=args.with_products, progress=not args.json, workers=args.workers,
            dims=dims,
        )
    except ScenarioError as exc:
        print(f"dco: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a campaign the scenario made that does not validate: name it, no traceback
        from dco.errors import ConfigError

        if isinstance(exc, ConfigError):
            print(f"dco: the scenario's campaign is invalid: {exc}", file=sys.stderr)
            return 2
        raise
    if args.stats_out:
        write_stats(args.stats_out, result.stats_object)
    s = result.summary
    if args.json:
        print(json.dumps(s))
        return 0
    print(_text_summary(s))
    return 0


def _text_summary(s: Mapping[str, Any]) -> str:
    """The summary for people: the shares of the oracle first, then the counts and the timing."""
    def pct(x: Any) -> str:
        return "n/a" if x is None else f"{x:.3f}"

    lines = [
        f"{s['scenario']} ({s['policy']}, seed {s['seed']}, {s['impressions']:,} impressions, engine "
        f"{s.get('engine', 'numpy')})",
        f"  share of the oracle CTR: {pct(s['share_of_oracle'])} over the run, {pct(s['tail_share_of_oracle'])} in "
        f"the last 10 % (random: {pct(s['random_share_of_oracle'])})",
        f"  realized CTR {s['ctr']:.4%} (oracle {s['oracle_ctr']:.4%}, random {s['random_ctr']:.4%}); holdout "
        f"{pct(s['holdout_ctr'])}",
        f"  90 % of the oracle from impression {s['impressions_to_90pct_oracle']}",
    ]
    for k, phase in enumerate(s.get("recovery") or [], start=1):
        lines.append(
            f"  change {k} at {phase['at']:,}: {pct(phase['phase_share_of_oracle'])} of its oracle over the phase, "
            f"{pct(phase['phase_tail_share_of_oracle'])} in its last 10 %, back to 90 % after "
            f"{phase['recovery_impressions']} impressions"
        )
    lines.append(f"  {s['impressions_per_second']:,} impressions/s on {s['workers']} worker(s), {s['seconds']} s")
    return "\n".join(lines)


def _workers_arg(text: str) -> int | None:
    """``--workers``: a whole number >= 1, or ``auto`` (None: :func:`auto_workers`)."""
    if text == "auto":
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1 or auto, got {text!r}")
    return value


def add_parser(sub: Any) -> None:
    p = sub.add_parser("simulate", help="play a scenario against the engine in-process and report learning figures")
    p.add_argument("--scenario", help="scenario file, or a name from examples/scenarios")
    p.add_argument("--suite", help="a directory of scenario files (dco scenarios generate): play them all")
    p.add_argument("--policy", choices=POLICIES, default="dco")
    p.add_argument("--impressions", type=int, default=None, help="default: the scenario's")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--seeds", default="1-5", help="with --suite: seeds to play each scenario with (1-5, or 1,3,7)")
    p.add_argument("--scale", type=float, default=1.0,
                   help="with --suite: play each scenario at this share of its impressions and days (0 < s <= 1)")
    p.add_argument("--holdout", type=float, default=None, help="override the campaign's holdout share")
    p.add_argument("--stats-refresh", type=int, default=None, help="override the scenario's stats_refresh")
    p.add_argument("--dims", default=None,
                   help="the campaign's learning dimensions, comma-separated (default: the scenario's context keys)")
    p.add_argument("--pure-python", action="store_true",
                   help="run the engine without numpy and pyroaring (its pure-Python path, as in Pyodide)")
    p.add_argument("--with-products", action="store_true", help="keep the creative's product selection")
    p.add_argument("--log-out", help="write the decision log (logged-bandit CSV for `dco evaluate`)")
    p.add_argument("--stats-out", help="write the final stats object (.json, or .msgpack) for `dco report`")
    p.add_argument("--workers", type=_workers_arg, default=None,
                   help="processes that play each stats window (same results for any number; default auto: "
                   f"1 under {PARALLEL_FROM:,} impressions, else one per CPU up to {MAX_AUTO_WORKERS})")
    p.add_argument("--out", help="with --suite: write every run's summary here (JSON lines)")
    p.add_argument("--json", action="store_true", help="one JSON line, no progress")
    p.set_defaults(func=cmd_simulate)
