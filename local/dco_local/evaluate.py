"""``dco evaluate``: off-policy estimates of a target policy's value from a logged-bandit CSV, and holdout lift.

Input: one row per logged decision, columns ``ctx_<name>`` (the context), ``action``, ``reward`` (0/1 or any
number) and ``propensity`` (the probability the logging policy had of taking the logged action; decisions
record it, ``dco simulate --log-out`` writes the format). Other columns are ignored.

Target policies ``pi``:

* ``logged``: the logging policy itself (sanity check: every estimate equals the mean reward);
* ``uniform``: each action seen in the log with probability ``1 / |A|``;
* ``greedy``: per context, the action with the best reward-model estimate (ties: the first in sorted order).

Estimators, with ``w_i = pi(a_i | x_i) / p_i`` and the reward model ``q``:

* IPW: ``mean(w r)``; CI ``+-1.96 sd(w r) / sqrt(n)``;
* SNIPW: ``sum(w r) / sum(w)``; CI by the delta method, ``sd(w (r - V)) / (mean(w) sqrt(n))``;
* DR: ``mean(sum_a pi(a|x) q(x, a) + w (r - q(x, a_i)))``; CI from the standard deviation of the terms.

All three assume the logging policy gave every action the target takes a positive probability. A converged
Thompson sampler does not (pruned arms have propensity 0); the mean weight ``mean(w)`` (1 under full support)
is printed as the diagnostic. The holdout rows (uniform rotation) always have full support.

Reward model ``q`` (for DR and greedy): per (context, action) empirical mean shrunk toward the action's mean,
itself shrunk toward the overall mean: ``q(x,a) = (S_xa + k m_a) / (N_xa + k)``, ``m_a = (S_a + k m) / (N_a + k)``,
``k = 5`` (the back-off: unseen pairs read ``m_a``; unseen actions read ``m``).

Holdout lift (:func:`ratio_lift`): ``CTR_optimized / CTR_holdout - 1`` with a 95 % interval from the delta method
on the log of the ratio: ``var(log R) = (1 - p1) / (n1 p1) + (1 - p0) / (n0 p0)``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

Z95 = 1.959963984540054
POLICIES = ("logged", "uniform", "greedy")
SHRINK = 5.0


@dataclass(frozen=True)
class Log:
    contexts: list[tuple[str, ...]]
    actions: list[str]
    rewards: list[float]
    propensities: list[float]
    context_names: tuple[str, ...]


def read_log(path: str) -> Log:
    """Read a logged-bandit CSV (``ValueError`` names the row or the missing column)."""
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        fields = reader.fieldnames or []
        missing = [c for c in ("action", "reward", "propensity") if c not in fields]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}")
        names = tuple(c for c in fields if c.startswith("ctx_"))
        log = Log([], [], [], [], names)
        for i, row in enumerate(reader, start=2):
            try:
                p = float(row["propensity"])
                r = float(row["reward"])
            except ValueError:
                raise ValueError(f"{path}: row {i}: reward and propensity must be numbers") from None
            if not 0.0 < p <= 1.0:
                raise ValueError(f"{path}: row {i}: propensity must be in (0, 1], got {p}")
            log.contexts.append(tuple(row[c] for c in names))
            log.actions.append(row["action"])
            log.rewards.append(r)
            log.propensities.append(p)
    if not log.actions:
        raise ValueError(f"{path}: no rows")
    return log


class RewardModel:
    """Per (context, action) means with back-off to per-action means and the overall mean (see the module doc)."""

    def __init__(self, log: Log, k: float = SHRINK) -> None:
        self.k = k
        pair: dict[tuple[Any, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
        act: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        for x, a, r in zip(log.contexts, log.actions, log.rewards, strict=True):
            pair[(x, a)][0] += r
            pair[(x, a)][1] += 1
            act[a][0] += r
            act[a][1] += 1
        self.mean = sum(log.rewards) / len(log.rewards)
        self.action_mean = {a: (s + k * self.mean) / (n + k) for a, (s, n) in act.items()}
        self.pair = dict(pair)

    def q(self, x: tuple[str, ...], a: str) -> float:
        m_a = self.action_mean.get(a, self.mean)
        s, n = self.pair.get((x, a), (0.0, 0.0))
        return (s + self.k * m_a) / (n + self.k)


def _mean_sd(values: Sequence[float]) -> tuple[float, float]:
    n = len(values)
    mean = math.fsum(values) / n
    var = math.fsum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return mean, math.sqrt(var)


def _interval(value: float, se: float) -> dict[str, float]:
    return {"value": value, "se": se, "ci_low": value - Z95 * se, "ci_high": value + Z95 * se}


def estimate(log: Log, policy: str) -> dict[str, Any]:
    """IPW, SNIPW and DR estimates of ``policy``'s value (mean reward per decision) with 95 % intervals."""
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
    model = RewardModel(log)
    actions = sorted(set(log.actions))
    n = len(log.actions)
    greedy: dict[tuple[str, ...], str] = {}
    if policy == "greedy":
        for x in set(log.contexts):
            greedy[x] = max(actions, key=lambda a, x=x: (model.q(x, a), -actions.index(a)))
    w: list[float] = []
    direct: list[float] = []
    for x, a, p in zip(log.contexts, log.actions, log.propensities, strict=True):
        if policy == "logged":
            w.append(1.0)
            direct.append(model.q(x, a))  # pi = the logging policy: only the logged action's q is known
        elif policy == "uniform":
            w.append(1.0 / len(actions) / p)
            direct.append(sum(model.q(x, b) for b in actions) / len(actions))
        else:
            g = greedy[x]
            w.append((1.0 if a == g else 0.0) / p)
            direct.append(model.q(x, g))
    r = log.rewards
    wr = [wi * ri for wi, ri in zip(w, r, strict=True)]
    ipw, sd_ipw = _mean_sd(wr)
    sw = math.fsum(w)
    snipw = math.fsum(wr) / sw if sw > 0 else float("nan")
    mean_w = sw / n
    resid = [wi * (ri - snipw) for wi, ri in zip(w, r, strict=True)]
    _, sd_res = _mean_sd(resid)
    if policy == "logged":
        dr_terms = list(r)
    else:
        dr_terms = [
            d + wi * (ri - model.q(x, a))
            for d, wi, ri, x, a in zip(direct, w, r, log.contexts, log.actions, strict=True)
        ]
    dr, sd_dr = _mean_sd(dr_terms)
    root = math.sqrt(n)
    return {
        "policy": policy,
        "rows": n,
        "actions": len(actions),
        "contexts": len(set(log.contexts)),
        "mean_weight": mean_w,
        "effective_sample_size": sw * sw / math.fsum(wi * wi for wi in w) if sw > 0 else 0.0,
        "ipw": _interval(ipw, sd_ipw / root),
        "snipw": _interval(snipw, sd_res / (mean_w * root) if mean_w > 0 else float("nan")),
        "dr": _interval(dr, sd_dr / root),
        "logged_mean_reward": math.fsum(r) / n,
    }


def ratio_lift(clicks1: int, imps1: int, clicks0: int, imps0: int) -> dict[str, Any] | None:
    """Lift of group 1 (optimized) over group 0 (holdout): ``p1 / p0 - 1`` with a delta-method 95 % interval.

    >>> round(ratio_lift(200, 10000, 100, 10000)["lift"], 3)
    1.0
    """
    if imps1 <= 0 or imps0 <= 0 or clicks1 <= 0 or clicks0 <= 0:
        return None
    p1, p0 = clicks1 / imps1, clicks0 / imps0
    ratio = p1 / p0
    se = math.sqrt((1 - p1) / (imps1 * p1) + (1 - p0) / (imps0 * p0))
    return {
        "optimized_ctr": p1,
        "holdout_ctr": p0,
        "lift": ratio - 1.0,
        "ci_low": ratio * math.exp(-Z95 * se) - 1.0,
        "ci_high": ratio * math.exp(Z95 * se) - 1.0,
        "method": "delta method on log(CTR ratio)",
    }


# ------------------------------------------------------------------------------------------------ CLI


def cmd_evaluate(args: argparse.Namespace) -> int:
    try:
        log = read_log(args.log)
        result = estimate(log, args.policy)
    except (OSError, ValueError) as exc:
        print(f"dco: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{args.log}: {result['rows']:,} decisions, {result['actions']:,} actions, {result['contexts']} contexts")
    print(f"target policy {result['policy']}: effective sample size {result['effective_sample_size']:,.0f}")
    for name in ("ipw", "snipw", "dr"):
        e = result[name]
        print(f"  {name:6s} {e['value']:.5f}  95% CI [{e['ci_low']:.5f}, {e['ci_high']:.5f}]")
    print(f"  logged mean reward {result['logged_mean_reward']:.5f}")
    if not 0.8 <= result["mean_weight"] <= 1.2:
        print(f"  warning: mean importance weight {result['mean_weight']:.2f} (1 when the logging policy covers the"
              " target's actions): IPW is biased low where the logged policy never tried an action; prefer SNIPW/DR,"
              " or evaluate on the holdout rows")
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("evaluate", help="off-policy value estimates (IPW, SNIPW, DR) from a logged-bandit CSV")
    p.add_argument("--log", required=True, help="CSV with ctx_* columns, action, reward, propensity")
    p.add_argument("--policy", choices=POLICIES, default="greedy")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_evaluate)
