"""``dco scenarios generate``: scenario files drawn from families, so that learning is judged on many worlds
nobody hand-tuned (docs/learning.md, "Judged on generated suites").

Data flow::

    (family, index, seed) ──> random.Random(blake2b("family/seed/index")) ──> a scenario dict in the format of
    examples/scenarios/*.json (dco simulate's; local/dco_local/simulate.py documents it) ──> DIR/<family>-<nn>.json

A family fixes what kind of world it draws, never its exact numbers: the library sizes, the context dimensions
and their shares, the effect sizes (logits), the traffic and the stats refresh interval are all drawn. Every
file carries ``family``, ``index``, ``seed`` and a ``description`` saying what was drawn.

Families (docs/learning.md has the table with the ranges):

* ``main``: component main effects only; context dimensions exist but carry no effect.
* ``context``: context x component effects over 1-3 context dimensions (region, device, daypart, placement),
  some constant (one value for all traffic) or absent for part of the traffic (no signal), plus main effects.
* ``pairs``: component x component interactions (some make a combination better than the main winners).
* ``drift``: main and context effects that are redrawn once or twice during the run.
* ``wide``: libraries up to 60 images x 20 headlines x 8 CTAs x 5 offers.
* ``realistic``: base CTR 0.2-1 %, effects of 0.1-0.5 logit, stats refresh every 10k-50k impressions, 1-3M
  impressions.
* ``flat``: no effect at all (the optimizer must not hurt).

Generation is pure (``random.Random`` seeded from the family, seed and index), so a suite is reproduced exactly
from its command line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

FAMILIES = ("main", "context", "pairs", "drift", "wide", "realistic", "flat")

# Slot names and the prefix of their variant ids, in the order creatives declare them.
SLOT_PREFIX = {"image": "img", "headline": "h", "cta": "c", "offer": "o"}
# Context dimensions a generated scenario can draw: region and device become geo/device signals, the others
# contextual keys (``context.<key>``). An empty value is a request without that signal.
REGIONS = ("pnw", "northeast", "southeast", "midwest", "southwest", "california", "mountain", "texas")
DIMENSION_VALUES: dict[str, tuple[str, ...]] = {
    "region": REGIONS,
    "device": ("mobile", "desktop", "tablet"),
    "daypart": ("morning", "afternoon", "evening", "night"),
    "placement": ("feed", "article", "sidebar", "video"),
}


class GenerateError(ValueError):
    """A generation request that cannot be honoured (the message names the parameter)."""


def _rng(family: str, seed: int, index: int) -> random.Random:
    material = f"{family}/{seed}/{index}".encode()
    return random.Random(int.from_bytes(hashlib.blake2b(material, digest_size=8).digest(), "big"))


def _shares(rnd: random.Random, values: Sequence[str]) -> dict[str, float]:
    """Traffic shares of ``values``: uneven (a Dirichlet(2) draw), rounded to 3 decimals, summing to 1."""
    raw = [rnd.gammavariate(2.0, 1.0) for _ in values]
    total = sum(raw)
    shares = [max(0.02, round(x / total, 3)) for x in raw]
    shares[-1] = round(1.0 - sum(shares[:-1]), 3)
    if shares[-1] <= 0:  # the floors pushed the sum over 1: spread evenly instead
        shares = [round(1.0 / len(values), 3)] * len(values)
        shares[-1] = round(1.0 - sum(shares[:-1]), 3)
    return dict(zip(values, shares, strict=True))


def _slots(rnd: random.Random, sizes: dict[str, tuple[int, int]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for slot, (lo, hi) in sizes.items():
        prefix = SLOT_PREFIX[slot]
        out[slot] = [f"{prefix}{i:02d}" for i in range(1, rnd.randint(lo, hi) + 1)]
    return out


def _contexts(rnd: random.Random, dims: Sequence[str], *, constant: Sequence[str] = (),
              absent: Sequence[str] = ()) -> dict[str, dict[str, float]]:
    """Traffic shares per dimension. A ``constant`` dimension has one value for all traffic; an ``absent`` one
    has an empty value (no signal) for 20-50 % of the traffic."""
    out: dict[str, dict[str, float]] = {}
    for dim in dims:
        pool = DIMENSION_VALUES[dim]
        if dim in constant:
            out[dim] = {rnd.choice(pool): 1.0}
            continue
        lo = 2
        hi = len(pool) if dim != "region" else 6
        values = rnd.sample(pool, rnd.randint(lo, hi))
        shares = _shares(rnd, values)
        if dim in absent:
            missing = round(rnd.uniform(0.2, 0.5), 3)
            shares = {v: round(p * (1.0 - missing), 3) for v, p in shares.items()}
            first = next(iter(shares))
            shares[first] = round(shares[first] + 1.0 - missing - sum(shares.values()), 3)
            shares[""] = missing
        out[dim] = shares
    return out


def _term(when: dict[str, str], logit: float) -> dict[str, Any]:
    return {"when": when, "logit": round(logit, 3)}


def _main_terms(rnd: random.Random, slots: dict[str, list[str]], spread: tuple[float, float],
                winner: tuple[float, float]) -> list[dict[str, Any]]:
    """Per slot: every variant an effect ~ N(0, sigma) with sigma drawn from ``spread``, and one variant a clear
    lead (``winner``) on top."""
    terms = []
    for slot, variants in slots.items():
        sigma = rnd.uniform(*spread)
        lead = rnd.choice(variants)
        for v in variants:
            effect = rnd.gauss(0.0, sigma) + (rnd.uniform(*winner) if v == lead else 0.0)
            if abs(effect) >= 0.01:
                terms.append(_term({slot: v}, effect))
    return terms


def _context_terms(rnd: random.Random, slots: dict[str, list[str]], contexts: dict[str, dict[str, float]],
                   dims: Sequence[str], size: tuple[float, float], per_slot: int) -> list[dict[str, Any]]:
    """For ``per_slot`` slots and each dimension of ``dims``: per value, a variant that is better there
    (``size``), and another one worse (half of ``size``, negative)."""
    terms = []
    slot_names = rnd.sample(list(slots), min(per_slot, len(slots)))
    for dim in dims:
        values = [v for v in contexts.get(dim, {}) if v]
        if len(values) < 2:
            continue
        for slot in slot_names:
            for value in values:
                good, bad = rnd.sample(slots[slot], 2) if len(slots[slot]) > 1 else (slots[slot][0], None)
                terms.append(_term({dim: value, slot: good}, rnd.uniform(*size)))
                if bad is not None:
                    terms.append(_term({dim: value, slot: bad}, -0.5 * rnd.uniform(*size)))
    return terms


def _pair_terms(rnd: random.Random, slots: dict[str, list[str]], count: int,
                size: tuple[float, float]) -> list[dict[str, Any]]:
    names = list(slots)
    terms = []
    for _ in range(count):
        a, b = rnd.sample(names, 2)
        terms.append(_term({a: rnd.choice(slots[a]), b: rnd.choice(slots[b])}, rnd.uniform(*size)))
    return terms


def generate(family: str, index: int, seed: int) -> dict[str, Any]:
    """One scenario of ``family`` (deterministic in ``(family, index, seed)``)."""
    if family not in FAMILIES:
        raise GenerateError(f"--family must be one of {', '.join(FAMILIES)}, got {family!r}")
    rnd = _rng(family, seed, index)
    refresh = rnd.choice((1000, 2000, 5000))
    impressions = rnd.randrange(150_000, 400_001, 10_000)
    days = rnd.randint(7, 28)  # the campaign's flight: the simulated clock (time-discounted evidence) runs on it
    base = round(rnd.uniform(-4.6, -3.9), 3)
    sizes = {"image": (6, 16), "headline": (4, 10), "cta": (3, 6)}
    if rnd.random() < 0.3:
        sizes["offer"] = (2, 5)
    drift: list[dict[str, Any]] = []
    note = ""
    if family == "wide":
        sizes = {"image": (30, 60), "headline": (10, 20), "cta": (5, 8), "offer": (3, 5)}
        impressions = rnd.randrange(400_000, 1_000_001, 50_000)
        slots = _slots(rnd, sizes)
        dims = ["region", "device"]
        contexts = _contexts(rnd, dims)
        terms = _main_terms(rnd, slots, (0.1, 0.35), (0.3, 0.6))
        terms += _context_terms(rnd, slots, contexts, ["region"], (0.4, 0.9), 1)
    elif family == "realistic":
        base = round(math.log(p := rnd.uniform(0.002, 0.01)) - math.log(1 - p), 3)
        refresh = rnd.choice((10_000, 20_000, 50_000))
        impressions = rnd.randrange(1_000_000, 3_000_001, 100_000)
        slots = _slots(rnd, sizes)
        dims = ["region", "device"] + (["daypart"] if rnd.random() < 0.5 else [])
        contexts = _contexts(rnd, dims)
        terms = _main_terms(rnd, slots, (0.05, 0.15), (0.1, 0.5))
        terms += _context_terms(rnd, slots, contexts, [rnd.choice(dims)], (0.1, 0.5), 1)
        terms += _pair_terms(rnd, slots, rnd.randint(0, 1), (0.1, 0.5))
    else:
        slots = _slots(rnd, sizes)
        if family == "context":
            dims = rnd.sample(list(DIMENSION_VALUES), rnd.randint(1, 3))
            constant = [d for d in dims if rnd.random() < 0.25]
            absent = [d for d in dims if d not in constant and rnd.random() < 0.25]
            contexts = _contexts(rnd, dims, constant=constant, absent=absent)
            live = [d for d in dims if d not in constant] or dims
            terms = _main_terms(rnd, slots, (0.05, 0.2), (0.0, 0.3))
            terms += _context_terms(rnd, slots, contexts, live, (0.5, 1.2), rnd.randint(1, 2))
            note = f" constant {constant or 'none'}, absent for part of the traffic {absent or 'none'}."
        else:
            dims = rnd.sample(["region", "device", "daypart"], rnd.randint(1, 2))
            contexts = _contexts(rnd, dims)
            if family == "main":
                terms = _main_terms(rnd, slots, (0.1, 0.4), (0.2, 0.6))
            elif family == "pairs":
                terms = _main_terms(rnd, slots, (0.05, 0.25), (0.1, 0.4))
                terms += _pair_terms(rnd, slots, rnd.randint(1, 3), (0.4, 1.0))
            elif family == "drift":
                # a change is told from noise by the clicks of a day or so: campaigns of 40k-80k impressions a day
                impressions = rnd.randrange(300_000, 600_001, 10_000)
                days = max(6, round(impressions / rnd.randrange(40_000, 80_001, 5_000)))
                terms = _main_terms(rnd, slots, (0.05, 0.25), (0.2, 0.5))
                terms += _context_terms(rnd, slots, contexts, dims[:1], (0.5, 1.0), 1)
                # one change, or two; every phase lasts at least a quarter of the run (a day and a half or more)
                if rnd.random() < 0.5:
                    changes = [round(rnd.uniform(0.3, 0.6), 3)]
                else:
                    first = rnd.uniform(0.25, 0.4)
                    changes = [round(first, 3), round(first + rnd.uniform(0.25, 0.35), 3)]
                for at in changes:
                    after = _main_terms(rnd, slots, (0.05, 0.25), (0.2, 0.5))
                    after += _context_terms(rnd, slots, contexts, dims[:1], (0.5, 1.0), 1)
                    drift.append({"at": at, "terms": after})
                note = f" The winners change at {', '.join(f'{a:.0%}' for a in changes)} of the run."
            else:  # flat
                terms = []
    shape = " x ".join(f"{len(v)} {k}" for k, v in slots.items())
    ctx = ", ".join(f"{k} ({len([v for v in vals if v])} values)" for k, vals in contexts.items()) or "none"
    scenario: dict[str, Any] = {
        "name": f"{family}-{index:02d}",
        "family": family,
        "index": index,
        "seed": seed,
        "description": f"{family}: {shape}; contexts {ctx}; {len(terms)} effect terms; base CTR "
                       f"{1 / (1 + math.exp(-base)):.2%}; {days} days.{note}",
        "impressions": impressions,
        "stats_refresh": refresh,
        "impressions_per_day": impressions // days,
        "contexts": contexts,
        "slots": slots,
        "truth": {"base_logit": base, "terms": terms},
    }
    if drift:
        scenario["drift"] = drift
    return scenario


def write_suite(out: Path, families: Sequence[str], count: int, seed: int) -> list[Path]:
    """``count`` scenarios of each family into ``out`` (``<family>-<nn>.json``); returns the paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for family in families:
        for index in range(1, count + 1):
            path = out / f"{family}-{index:02d}.json"
            path.write_text(json.dumps(generate(family, index, seed), indent=1) + "\n")
            paths.append(path)
    return paths


def cmd_generate(args: argparse.Namespace) -> int:
    families = list(FAMILIES) if args.family == "all" else [f for f in args.family.split(",") if f]
    try:
        for family in families:
            if family not in FAMILIES:
                raise GenerateError(f"--family must be all or one of {', '.join(FAMILIES)}, got {family!r}")
        if args.count < 1:
            raise GenerateError(f"--count must be at least 1, got {args.count}")
        paths = write_suite(Path(args.out), families, args.count, args.seed)
    except GenerateError as exc:
        print(f"dco: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"dco: cannot write {args.out}: {exc.strerror}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"out": args.out, "scenarios": [str(p) for p in paths]}))
    else:
        print(f"{len(paths)} scenarios in {args.out}")
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("scenarios", help="generate scenario files from families (learning suites)")
    inner = p.add_subparsers(dest="scenarios_command", required=True)
    g = inner.add_parser("generate", help="write N scenarios of a family (or all) into a directory")
    g.add_argument("--family", default="all", help=f"all, or a comma list of {', '.join(FAMILIES)}")
    g.add_argument("--count", type=int, default=5, help="scenarios per family (default 5)")
    g.add_argument("--seed", type=int, default=1, help="generation seed (default 1)")
    g.add_argument("--out", default="suite", help="directory to write into (default ./suite)")
    g.add_argument("--json", action="store_true", help="one JSON line listing the files")
    g.set_defaults(func=cmd_generate)
