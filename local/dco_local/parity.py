"""The numpy and pure-Python paths of the learner compared on the stats of simulated scenarios (docs/learning.md,
"The same decisions everywhere").

Data flow::

    scenario ──> dco simulate (numpy, n impressions) ──> its stats object (contexts counters)
             ──> fit_models twice from the same counters: numpy and pure Python ──> the two models' largest difference
             ──> per context of the scenario (all variants eligible): build_table numpy on the numpy model and pure
                 Python on the pure model ──> rows whose winner differs, and how far apart their drawn logits are

A decision picks a table row uniformly, so the share of equal rows is the share of decisions the two paths make
alike. Where a winner differs the two paths' drawn logits are compared: a difference below ``tie`` (1e-9) means
the two combinations tied to floating-point rounding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

TIE = 1e-9


def compare(obj: dict[str, Any], contexts: Sequence[dict[str, str]], eligible: Sequence[Sequence[str]],
            creative: str = "cr-sim", objective: str = "click") -> dict[str, Any]:
    """Fit both paths on ``obj``'s counters (cold), draw both tables per context, compare."""
    from dco.learning.context import model_context
    from dco.learning.draws import ModelView, build_table, table_seed
    from dco.learning.model import KeyParser, fit_models

    rows = obj.get("contexts") or {}
    now = int(obj.get("updated_at", 0))
    fast = fit_models(rows, now, parser=KeyParser(), accelerated=True).get(creative, {}).get(objective)
    slow = fit_models(rows, now, parser=KeyParser(), accelerated=False).get(creative, {}).get(objective)
    model_diff = _max_diff(fast, slow)
    rows_total = equal = ties = 0
    worst_gap = 0.0
    for ctx in contexts:
        key = (creative, objective, tuple(sorted(model_context(ctx).items())))
        seed = table_seed(now, key)
        a = build_table(ModelView(fast), eligible, model_context(ctx), [], seed, accelerated=True)
        b = build_table(ModelView(slow), eligible, model_context(ctx), [], seed, accelerated=False)
        for k in range(a.rows):
            rows_total += 1
            gap = abs(a.scores[k] - b.scores[k]) if a.scores[k] is not None and b.scores[k] is not None else 0.0
            if a.winners[k] == b.winners[k]:
                equal += 1
            else:
                worst_gap = max(worst_gap, gap)
                ties += gap < TIE
    return {"rows": rows_total, "equal": equal, "differing_ties": ties, "differing": rows_total - equal,
            "largest_gap_where_differing": worst_gap, "largest_model_difference": model_diff}


def _max_diff(a: Any, b: Any) -> float:
    """The largest absolute difference between two models' numbers (inf when their layouts differ)."""
    if a is None or b is None:
        return 0.0 if a is b else math.inf
    if a.get("variants") != b.get("variants") or a.get("values") != b.get("values"):
        return math.inf
    worst = max(abs(x - y) for x, y in zip(a["log_weights"], b["log_weights"], strict=True))
    for ma, mb in zip(a["memories"], b["memories"], strict=True):
        worst = max(worst, abs(ma["intercept"] - mb["intercept"]))
        for name, ga in ma["groups"].items():
            gb = mb["groups"][name]
            for field in ("mean", "var", "mix"):
                for x, y in zip(ga[field], gb[field], strict=True):
                    worst = max(worst, abs(x - y))
    return worst


def scenario_parity(path: str, impressions: int, seed: int = 1) -> dict[str, Any]:
    """Play a scenario with numpy for ``impressions`` and compare the two paths on its final counters."""
    from dco_local.simulate import Truth, load_scenario, simulate

    scenario = load_scenario(path)
    scenario.impressions = impressions
    scenario.stats_refresh = min(scenario.stats_refresh, max(200, impressions // 20))
    result = simulate(scenario, "dco", seed=seed, workers=1)
    truth = Truth(scenario)
    contexts = []
    for ctx in truth.contexts:
        signal = {}
        for k, v in ctx.items():
            if v:
                signal[k if k in ("region", "device") else f"context.{k}"] = v
        contexts.append(signal)
    eligible = [list(v) for v in truth.variants]
    out = compare(result.stats_object, contexts, eligible)
    out["scenario"] = Path(path).name
    return out


def run_parity(files: Sequence[str], impressions: int, seeds: Sequence[int], quiet: bool = True) -> dict[str, Any]:
    """:func:`scenario_parity` over scenario files and seeds (a progress bar on stderr unless ``quiet``): per run
    and in total, the rows compared, equal, differing and differing by a floating-point tie."""
    from dco_local.suite import _progress

    runs = []
    bar = _progress(len(files) * len(seeds), quiet)
    try:
        for path in files:
            for seed in seeds:
                found = scenario_parity(path, impressions, seed)
                found["seed"] = seed
                runs.append(found)
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    total = {k: sum(r[k] for r in runs) for k in ("rows", "equal", "differing", "differing_ties")}
    total["equal_share"] = total["equal"] / total["rows"] if total["rows"] else 1.0
    total["largest_gap_where_differing"] = max((r["largest_gap_where_differing"] for r in runs), default=0.0)
    total["largest_model_difference"] = max((r["largest_model_difference"] for r in runs), default=0.0)
    return {"impressions": impressions, "seeds": list(seeds), "runs": runs, "total": total}


def cmd_parity(args: Any) -> int:
    import json
    import sys

    from dco_local.suite import SuiteError, parse_seeds, suite_files

    try:
        if args.impressions < 1000:
            raise SuiteError(f"--impressions must be at least 1000, got {args.impressions}")
        seeds = parse_seeds(args.seeds)
        files = suite_files(args.suite)
    except SuiteError as exc:
        print(f"dco parity: {exc}", file=sys.stderr)
        return 2
    found = run_parity(files, args.impressions, seeds, quiet=args.json)
    total = found["total"]
    if args.json:
        print(json.dumps(found))
    else:
        for r in found["runs"]:
            print(f"{r['scenario']:24s} seed {r['seed']}: {r['equal']}/{r['rows']} rows alike, "
                  f"{r['differing']} differ ({r['differing_ties']} ties), model difference "
                  f"{r['largest_model_difference']:.2e}")
        print(f"total: {total['equal']}/{total['rows']} rows alike ({100 * total['equal_share']:.3f} %), "
              f"{total['differing']} differ, {total['differing_ties']} of them floating-point ties "
              f"(largest gap {total['largest_gap_where_differing']:.2e}); largest model difference "
              f"{total['largest_model_difference']:.2e}")
    # the verdict: every differing row a tie
    return 0 if total["differing"] == total["differing_ties"] else 1


def add_parser(sub: Any) -> None:
    p = sub.add_parser("parity", help="compare the learner's numpy and pure-Python paths on a suite's scenarios")
    p.add_argument("--suite", required=True, help="a directory of scenario files, or one file")
    p.add_argument("--impressions", type=int, default=20_000,
                   help="impressions each scenario is played for before the comparison (default 20,000)")
    p.add_argument("--seeds", default="1", help="seeds (1-5, or 1,3,7; default 1)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_parity)
