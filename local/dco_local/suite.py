"""``dco simulate --suite DIR``: play every scenario of a generated suite (``dco scenarios generate``) with several
seeds, the policy under test beside the reference learners, and summarize per family (docs/learning.md,
"Judged on generated suites").

Data flow::

    DIR/*.json ──> jobs (scenario x seed x policy, the policy and per-arm-ts and per-slot-ts)
               ──> a pool of processes (--workers, default one per CPU), each job one dco_local.simulate.simulate
                   (single process) ──> its summary (shares of the oracle from the true click probabilities)
               ──> per family and policy: median and worst share of the oracle over the run and in its last 10 %,
                   the share of random, after each drift change the phase's shares
               ──> a table, or one JSON object (--json); every run's summary as JSON lines (--out)

"Worst" is the worst scenario: each scenario's median over the seeds, then the lowest of the family. With
``--scale s`` each scenario is played at ``s`` of its impressions, of its impressions per day (the same number of
days) and of its stats refresh interval (the same number of publications), so a reduced suite keeps each world's
shape with fewer clicks.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REFERENCES = ("per-arm-ts", "per-slot-ts")
FAMILY_ORDER = ("main", "context", "pairs", "drift", "wide", "realistic", "flat")


class SuiteError(ValueError):
    """A suite request that cannot be honoured (the message names the parameter)."""


def parse_seeds(text: str) -> list[int]:
    """``"1-5"`` or ``"1,3,7"`` (or a mix: ``"1-3,9"``) as a list of seeds.

    >>> parse_seeds("1-3,9")
    [1, 2, 3, 9]
    """
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                if hi < lo:
                    raise ValueError
                out.extend(range(lo, hi + 1))
            elif part:
                out.append(int(part))
        except ValueError:
            raise SuiteError(f"--seeds must be like 1-5 or 1,3,7, got {text!r}") from None
    if not out:
        raise SuiteError(f"--seeds must name at least one seed, got {text!r}")
    return out


def _job(spec: tuple[str, int, str, float, str | None]) -> dict[str, Any]:
    from dco_local.simulate import load_scenario, simulate

    path, seed, policy, scale, dims = spec
    scenario = load_scenario(path)
    raw = scenario.raw
    if scale != 1.0:
        scenario.impressions = max(1000, int(scenario.impressions * scale))
        scenario.impressions_per_day = max(100, int(scenario.impressions_per_day * scale))
        scenario.stats_refresh = max(200, int(scenario.stats_refresh * scale))
    summary = simulate(scenario, policy, seed=seed, workers=1,
                       dims=None if dims is None else [d for d in dims.split(",") if d]).summary
    summary["family"] = raw.get("family", "other")
    summary["file"] = Path(path).name
    return summary


def _progress(total: int, quiet: bool) -> Any:
    """A progress bar on stderr (tqdm when installed, plain lines otherwise); None when ``quiet``."""
    if quiet:
        return None
    try:
        from tqdm import tqdm

        return tqdm(total=total, unit="run", file=sys.stderr, dynamic_ncols=True)
    except ImportError:
        class _Lines:
            def __init__(self) -> None:
                self.done = 0

            def update(self, n: int) -> None:
                self.done += n
                print(f"  {self.done}/{total} runs", file=sys.stderr, flush=True)

            def close(self) -> None:
                pass

        return _Lines()


def run_suite(
    files: Sequence[str], seeds: Sequence[int], policies: Sequence[str], *, scale: float = 1.0,
    workers: int | None = None, quiet: bool = True, dims: str | None = None,
) -> list[dict[str, Any]]:
    """Every (scenario, seed, policy) run's summary, in job order."""
    jobs = [(f, s, p, scale, dims) for f in files for s in seeds for p in policies]
    if workers is None:
        try:
            workers = len(os.sched_getaffinity(0))
        except AttributeError:
            workers = os.cpu_count() or 1
    bar = _progress(len(jobs), quiet)
    results: list[dict[str, Any] | None] = [None] * len(jobs)
    try:
        if workers <= 1 or len(jobs) == 1 or "fork" not in multiprocessing.get_all_start_methods():
            for i, job in enumerate(jobs):
                results[i] = _job(job)
                if bar is not None:
                    bar.update(1)
        else:
            with multiprocessing.get_context("fork").Pool(workers) as pool:
                # the longest scenarios first, so the pool does not end waiting on one
                order = sorted(range(len(jobs)), key=lambda i: -_size(jobs[i][0]))
                for i, summary in pool.imap_unordered(_indexed_job, [(i, jobs[i]) for i in order]):
                    results[i] = summary
                    if bar is not None:
                        bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return [r for r in results if r is not None]


def _indexed_job(item: tuple[int, Any]) -> tuple[int, dict[str, Any]]:
    return item[0], _job(item[1])


def _size(path: str) -> int:
    try:
        return int(json.loads(Path(path).read_text()).get("impressions", 0))
    except (OSError, ValueError):
        return 0


def _median(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return statistics.median(kept) if kept else None


def summarize(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per family and policy: the median over every run and the worst scenario (its median over seeds) of the
    share of the oracle, over the run (``share``) and in its last 10 % (``tail``); the share of random; for
    drifting scenarios the same after each change (``after_change``)."""
    out: dict[str, Any] = {}
    families = sorted({r["family"] for r in results},
                      key=lambda f: (FAMILY_ORDER.index(f) if f in FAMILY_ORDER else len(FAMILY_ORDER), f))
    for family in families:
        per_policy: dict[str, Any] = {}
        for policy in sorted({r["policy"] for r in results if r["family"] == family}):
            runs = [r for r in results if r["family"] == family and r["policy"] == policy]
            by_file: dict[str, list[dict[str, Any]]] = {}
            for r in runs:
                by_file.setdefault(r["file"], []).append(r)
            entry: dict[str, Any] = {
                "runs": len(runs),
                "share": _median([r["share_of_oracle"] for r in runs]),
                "share_worst": min(_median([r["share_of_oracle"] for r in rs]) or 0.0 for rs in by_file.values()),
                "tail": _median([r["tail_share_of_oracle"] for r in runs]),
                "tail_worst": min(_median([r["tail_share_of_oracle"] for r in rs]) or 0.0 for rs in by_file.values()),
                "random": _median([r["random_share_of_oracle"] for r in runs]),
                "realized_share": _median([r["ctr_over_oracle"] for r in runs]),
                "impressions_per_second": _median([r["impressions_per_second"] for r in runs]),
            }
            phases = [p for r in runs for p in (r.get("recovery") or [])]
            if phases:
                per_scenario = [
                    _median([p["phase_share_of_oracle"] for r in rs for p in (r.get("recovery") or [])])
                    for rs in by_file.values()
                ]
                entry["after_change"] = {
                    "changes": len(phases),
                    "share": _median([p["phase_share_of_oracle"] for p in phases]),
                    "share_worst": min((x for x in per_scenario if x is not None), default=None),
                    "tail": _median([p["phase_tail_share_of_oracle"] for p in phases]),
                    "recovery_impressions": _median([p["recovery_impressions"] for p in phases]),
                }
            per_policy[policy] = entry
        out[family] = per_policy
    return out


def text_table(summary: dict[str, Any], policy: str) -> str:
    """The per-family summary as a table: the policy's figures, then the reference learners' medians."""
    def f(x: Any) -> str:
        return "  n/a" if x is None else f"{x:.3f}"

    lines = [f"{'family':<10} {'share':>6} {'worst':>6} {'tail':>6} {'worst':>6} {'random':>6} | "
             f"{'per-arm':>7} {'tail':>6} | {'per-slot':>8} {'tail':>6} | after a change: share / tail"]
    for family, per_policy in summary.items():
        me = per_policy.get(policy, {})
        arm = per_policy.get("per-arm-ts", {})
        slot = per_policy.get("per-slot-ts", {})
        change = me.get("after_change")
        extra = f"{f(change['share'])} / {f(change['tail'])}" if change else ""
        lines.append(
            f"{family:<10} {f(me.get('share')):>6} {f(me.get('share_worst')):>6} {f(me.get('tail')):>6} "
            f"{f(me.get('tail_worst')):>6} {f(me.get('random')):>6} | {f(arm.get('share')):>7} "
            f"{f(arm.get('tail')):>6} | {f(slot.get('share')):>8} {f(slot.get('tail')):>6} | {extra}"
        )
    return "\n".join(lines)


def suite_files(suite: str) -> list[str]:
    """The scenario files of ``suite``: a directory's ``*.json`` files (sorted), or one file."""
    folder = Path(suite)
    if folder.is_file():
        return [str(folder)]
    files = sorted(str(p) for p in folder.glob("*.json")) if folder.is_dir() else []
    if not files:
        raise SuiteError(f"--suite {suite!r} is not a directory with scenario files (*.json)")
    return files


def cmd_suite(args: argparse.Namespace) -> int:
    try:
        files = suite_files(args.suite)
        seeds = parse_seeds(args.seeds)
        if not 0.0 < args.scale <= 1.0:
            raise SuiteError(f"--scale must be in (0, 1], got {args.scale}")
        policies = [args.policy] + [p for p in REFERENCES if p != args.policy]
        started = time.perf_counter()
        results = run_suite(files, seeds, policies, scale=args.scale, workers=args.workers, quiet=args.json,
                            dims=args.dims)
    except SuiteError as exc:
        print(f"dco: {exc}", file=sys.stderr)
        return 2
    summary = summarize(results)
    if args.out:
        with open(args.out, "w") as fh:
            for r in results:
                fh.write(json.dumps(r) + "\n")
    doc = {
        "suite": str(args.suite), "policy": args.policy, "seeds": seeds, "scale": args.scale,
        "scenarios": len(files), "runs": len(results), "seconds": round(time.perf_counter() - started, 1),
        "engine": results[0].get("engine") if results else None, "families": summary,
    }
    if args.json:
        print(json.dumps(doc))
    else:
        print(f"{len(files)} scenarios x {len(seeds)} seeds x {len(policies)} policies in {doc['seconds']} s "
              f"(scale {args.scale}, engine {doc['engine']}); shares of the oracle CTR, true click probabilities")
        print(text_table(summary, args.policy))
    return 0
