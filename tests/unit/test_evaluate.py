"""Off-policy estimators recover a known policy value on synthetic logs; holdout lift."""

from __future__ import annotations

import csv
import random

import pytest
from dco_local.evaluate import estimate, ratio_lift, read_log

MEANS = {("a",): {"x": 0.10, "y": 0.30, "z": 0.05}, ("b",): {"x": 0.40, "y": 0.10, "z": 0.20}}
LOGGING = {("a",): {"x": 0.6, "y": 0.2, "z": 0.2}, ("b",): {"x": 0.2, "y": 0.5, "z": 0.3}}


def _write_log(path, n: int = 40000, seed: int = 11) -> None:
    rnd = random.Random(seed)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["ctx_region", "action", "reward", "propensity"])
        for _ in range(n):
            ctx = ("a",) if rnd.random() < 0.5 else ("b",)
            actions = list(LOGGING[ctx])
            a = rnd.choices(actions, weights=[LOGGING[ctx][x] for x in actions])[0]
            r = 1 if rnd.random() < MEANS[ctx][a] else 0
            w.writerow([ctx[0], a, r, LOGGING[ctx][a]])


@pytest.fixture()
def log(tmp_path):
    path = tmp_path / "log.csv"
    _write_log(path)
    return read_log(str(path))


def _inside(est: dict, truth: float) -> bool:
    return est["ci_low"] <= truth <= est["ci_high"]


def test_uniform_policy_value_is_recovered(log):
    truth = 0.5 * sum(MEANS[("a",)].values()) / 3 + 0.5 * sum(MEANS[("b",)].values()) / 3
    result = estimate(log, "uniform")
    for name in ("ipw", "snipw", "dr"):
        assert _inside(result[name], truth), (name, result[name], truth)


def test_greedy_policy_value_is_recovered(log):
    truth = 0.5 * 0.30 + 0.5 * 0.40  # y in a, x in b
    result = estimate(log, "greedy")
    for name in ("ipw", "snipw", "dr"):
        assert _inside(result[name], truth), (name, result[name], truth)
    assert result["dr"]["se"] < result["ipw"]["se"]  # the reward model reduces variance


def test_logged_policy_is_the_mean_reward(log):
    result = estimate(log, "logged")
    mean = sum(log.rewards) / len(log.rewards)
    assert result["ipw"]["value"] == pytest.approx(mean)
    assert result["snipw"]["value"] == pytest.approx(mean)
    assert result["dr"]["value"] == pytest.approx(mean)


def test_bad_logs_are_rejected(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("ctx_a,action,reward\nx,y,1\n")
    with pytest.raises(ValueError, match="propensity"):
        read_log(str(path))
    path.write_text("ctx_a,action,reward,propensity\nx,y,1,0\n")
    with pytest.raises(ValueError, match="row 2"):
        read_log(str(path))


def test_ratio_lift_delta_method():
    lift = ratio_lift(200, 10000, 100, 10000)
    assert lift["lift"] == pytest.approx(1.0)
    se = ((1 - 0.02) / 200 + (1 - 0.01) / 100) ** 0.5
    import math

    assert lift["ci_low"] == pytest.approx(2 * math.exp(-1.959963984540054 * se) - 1)
    assert ratio_lift(0, 10, 1, 10) is None
