"""The simulator: closed-form oracle and random CTRs, scenario checks, a learning run, the decision log."""

from __future__ import annotations

import json
import math

import pytest

# The simulator and the report are developer tools built on numpy (and matplotlib); the pure-Python pass
# (--pure-python) covers the runtime core only, and these tests run in the accelerated pass.
np = pytest.importorskip("numpy", reason="developer tool needing numpy; covered by the accelerated run")
from dco_local.evaluate import estimate, read_log  # noqa: E402
from dco_local.simulate import ScenarioError, Truth, load_scenario, scenario_from_dict, simulate  # noqa: E402


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


TINY = {
    "name": "tiny",
    "impressions": 4000,
    "stats_refresh": 500,
    "contexts": {"region": {"pnw": 0.25, "southeast": 0.75}},
    "slots": {"image": ["i1", "i2"], "headline": ["h1", "h2"]},
    "truth": {
        "base_logit": -3.0,
        "terms": [
            {"when": {"image": "i2"}, "logit": 0.5},
            {"when": {"region": "pnw", "image": "i1"}, "logit": 1.0},
            {"when": {"image": "i2", "headline": "h2"}, "logit": 0.4},
        ],
    },
    "drift": [{"at": 0.5, "terms": [{"when": {"headline": "h1"}, "logit": 1.0}]}],
}


def test_oracle_and_random_ctr_match_closed_form():
    truth = Truth(scenario_from_dict(TINY))
    # phase 1, combos (image, headline): (i1,h1) (i1,h2) (i2,h1) (i2,h2)
    pnw = [sigmoid(-2.0), sigmoid(-2.0), sigmoid(-2.5), sigmoid(-2.1)]
    se = [sigmoid(-3.0), sigmoid(-3.0), sigmoid(-2.5), sigmoid(-2.1)]
    # phase 2: only h1 +1.0
    p2 = [sigmoid(-2.0), sigmoid(-3.0), sigmoid(-2.0), sigmoid(-3.0)]
    oracle = 0.5 * (0.25 * max(pnw) + 0.75 * max(se)) + 0.5 * max(p2)
    rand = 0.5 * (0.25 * sum(pnw) / 4 + 0.75 * sum(se) / 4) + 0.5 * sum(p2) / 4
    assert truth.oracle_ctr() == pytest.approx(oracle, rel=1e-12)
    assert truth.random_ctr() == pytest.approx(rand, rel=1e-12)


def test_scenario_errors_name_the_field():
    bad = dict(TINY, truth={"base_logit": -3, "terms": [{"when": {"colour": "red"}, "logit": 1}]})
    with pytest.raises(ScenarioError, match="colour"):
        scenario_from_dict(bad)
    with pytest.raises(ScenarioError, match="sum to 1"):
        scenario_from_dict(dict(TINY, contexts={"region": {"pnw": 0.5}}))
    with pytest.raises(ScenarioError, match="no scenario"):
        load_scenario("no-such-scenario")


def test_shipped_scenarios_load():
    for name in ("retail", "interactions", "drift"):
        s = load_scenario(name)
        assert s.slots and s.phases
    retail = load_scenario("retail")
    assert [len(v) for v in retail.slots.values()] == [40, 12, 6] and len(retail.contexts["region"]) == 6


def test_run_is_deterministic_and_complete(tmp_path):
    scenario = scenario_from_dict(TINY)
    a = simulate(scenario, "dco", impressions=1500, seed=3, log_out=str(tmp_path / "log.csv")).summary
    b = simulate(scenario, "dco", impressions=1500, seed=3).summary
    for key in ("policy", "impressions", "clicks", "ctr", "tail_ctr", "oracle_ctr", "random_ctr", "regret",
                "impressions_to_90pct_oracle", "recovery"):
        assert key in a
    assert a["clicks"] == b["clicks"] and a["regret"] == b["regret"]
    log = read_log(str(tmp_path / "log.csv"))
    assert len(log.actions) == 1500 and all(0 < p <= 1 for p in log.propensities)
    assert estimate(log, "logged")["ipw"]["value"] == pytest.approx(sum(log.rewards) / 1500)


def test_the_learner_finds_the_region_specific_best_image():
    # GIVEN i3 is best in pnw and i1 in southeast, the headline does not matter
    scenario = scenario_from_dict({
        "name": "regional", "impressions": 12000, "stats_refresh": 500,
        "contexts": {"region": {"pnw": 0.5, "southeast": 0.5}},
        "slots": {"image": ["i1", "i2", "i3", "i4"], "headline": ["h1", "h2"]},
        "truth": {"base_logit": -3.0, "terms": [
            {"when": {"region": "pnw", "image": "i3"}, "logit": 1.5},
            {"when": {"region": "southeast", "image": "i1"}, "logit": 1.5},
        ]},
    })
    # WHEN the product's learner plays it
    result = simulate(scenario, "dco", seed=7)
    rows = result.stats_object["contexts"]

    def top(region: str) -> str:
        served = {v: sum(r[0] for k, r in rows.items() if k.startswith(f"cr-sim|{v}.") and k.endswith(f"@region={region}"))
                  for v in ("i1", "i2", "i3", "i4")}
        return max(served, key=served.get)

    # THEN each region serves its own best image most, and the published model says why
    assert (top("pnw"), top("southeast")) == ("i3", "i1")
    assert result.summary["tail_ctr"] > 1.5 * result.summary["random_ctr"]
    assert result.summary["share_of_oracle"] > 0.8 and result.summary["tail_share_of_oracle"] > 0.9
    model = result.stats_object["models"]["cr-sim"]["click"]
    assert model["dims"] == ["region"] and len(model["memories"]) == 2


def test_reference_learners_play_and_random_is_random():
    scenario = scenario_from_dict(dict(TINY, drift=[]))
    for policy in ("per-arm-ts", "per-slot-ts"):
        s = simulate(scenario, policy, impressions=3000, seed=2).summary
        assert s["policy"] == policy and s["share_of_oracle"] > s["random_share_of_oracle"]


def test_random_policy_matches_random_ctr():
    s = simulate(scenario_from_dict(dict(TINY, drift=[])), "random", impressions=20000, seed=1).summary
    se = math.sqrt(s["random_ctr"] / s["steered_impressions"])
    assert abs(s["ctr"] - s["random_ctr"]) < 4 * se


def test_published_stats_carry_the_newest_epochs_of_discounted_sums_only():
    # GIVEN a run over more than two epochs of the recent memory's discounted sums
    from dco.learning.contract import EPOCH_S, KEEP_EPOCHS

    days = 3 * EPOCH_S // 86400
    scenario = scenario_from_dict({**TINY, "drift": [], "impressions_per_day": 3000 // days})
    obj = simulate(scenario, "dco", impressions=3000, seed=1).stats_object
    epochs = {int(k.rpartition("#d")[2]) for k in obj["contexts"] if "#d" in k}
    # THEN the object keeps the newest epochs only, as the fold and publish-stats do
    assert len(epochs) == KEEP_EPOCHS and max(epochs) - min(epochs) == KEEP_EPOCHS - 1
    assert all(isinstance(x, int) for k, row in obj["contexts"].items() for x in row[:3])


def test_cached_tables_give_the_same_decisions_as_fresh_ones():
    # GIVEN the published stats (with their models) of a short run of `interactions` and the simulator's engine
    from dco import learning
    from dco.device import Device
    from dco.request import AdRequest, Geo
    from dco.stats import StatsTable
    from dco_local.simulate import START, build_engine, campaign_for

    scenario = load_scenario("interactions")
    obj = simulate(scenario, "dco", impressions=6000, seed=4).stats_object
    data, _, experience = campaign_for(scenario, "dco")
    engine = build_engine(data, "dco", learning.DEFAULT_PARAMS)
    requests = [
        AdRequest(experience, START, geo=Geo(country="US", region=r), device=Device(type=d), user_id=f"u{i}")
        for i, (r, d) in enumerate([(r, d) for r in ("pnw", "southeast") for d in ("mobile", "desktop")] * 5)
    ]
    warm = StatsTable.from_trusted(obj)
    # WHEN many decisions share one stats table (decision tables and model views cached across decisions), and
    # some of them are replayed on a fresh table each (everything built for that one)
    decisions = {seed: engine.decide(requests[seed % len(requests)], warm, seed=seed) for seed in range(600)}
    for seed in range(0, 600, 15):
        fresh = StatsTable.from_object(obj) if seed % 2 else StatsTable.from_trusted(obj)
        # THEN the decisions are identical
        assert engine.decide(requests[seed % len(requests)], fresh, seed=seed) == decisions[seed]
    assert len({d.variants for d in decisions.values()}) > 5


TIMING = ("seconds", "impressions_per_second", "cpu_seconds", "impressions_per_cpu_second", "publish_seconds", "workers")


def test_worker_processes_give_the_same_run_as_one(tmp_path):
    # GIVEN a small scenario with drift, four contexts and short stats windows (phases change mid-window; the
    # contexts are shared out between the workers, three workers leave one idle in some windows)
    scenario = scenario_from_dict({**TINY, "contexts": {**TINY["contexts"], "device": {"mobile": 0.6, "desktop": 0.4}},
                                   "drift": [{"at": 0.3, "terms": []}, {"at": 0.55, "terms": TINY["drift"][0]["terms"]}]})
    runs = {}
    for workers in (1, 2, 3):
        log = tmp_path / f"log{workers}.csv"
        result = simulate(scenario, "dco", impressions=2600, seed=5, log_out=str(log), workers=workers)
        runs[workers] = (result, log.read_bytes())
    # THEN every figure but the timings, the final stats object and the decision log are the same
    base, base_log = runs[1]
    assert base.summary["workers"] == 1 and runs[2][0].summary["workers"] == 2
    for workers in (2, 3):
        result, log = runs[workers]
        assert {k: v for k, v in result.summary.items() if k not in TIMING} == {
            k: v for k, v in base.summary.items() if k not in TIMING
        }
        assert json.dumps(result.stats_object) == json.dumps(base.stats_object)  # same keys in the same order
        assert log == base_log
    # AND more workers than contexts are not started (a context is never split)
    assert simulate(scenario, "dco", impressions=2600, seed=5, workers=9).summary["workers"] == 4


def test_suite_runs_every_scenario_with_the_references_and_summarizes_per_family(tmp_path):
    from dco_local.cli import main
    from dco_local.scenarios import write_suite

    write_suite(tmp_path / "suite", ["main", "flat"], 1, 3)
    out = tmp_path / "runs.jsonl"
    assert main(["simulate", "--suite", str(tmp_path / "suite"), "--seeds", "1-2", "--scale", "0.02", "--workers",
                 "2", "--json", "--out", str(out)]) == 0
    runs = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(runs) == 2 * 2 * 3  # scenarios x seeds x (dco, per-arm-ts, per-slot-ts)
    assert {(r["family"], r["policy"]) for r in runs} == {
        (f, p) for f in ("main", "flat") for p in ("dco", "per-arm-ts", "per-slot-ts")}
    flat = [r for r in runs if r["family"] == "flat"]
    assert all(r["share_of_oracle"] == pytest.approx(1.0) for r in flat)  # nothing to learn, nothing lost


def test_suite_summary_takes_medians_and_the_worst_scenario():
    from dco_local.suite import parse_seeds, summarize

    def run(file, seed, share, tail):
        return {"family": "main", "policy": "dco", "file": file, "seed": seed, "share_of_oracle": share,
                "tail_share_of_oracle": tail, "random_share_of_oracle": 0.3, "ctr_over_oracle": share,
                "impressions_per_second": 100}

    runs = [run("a", 1, 0.9, 0.95), run("a", 2, 0.8, 0.97), run("b", 1, 0.6, 0.9), run("b", 2, 0.7, 0.92)]
    main = summarize(runs)["main"]["dco"]
    assert main["share"] == pytest.approx(0.75) and main["share_worst"] == pytest.approx(0.65)
    assert main["tail"] == pytest.approx(0.935) and main["tail_worst"] == pytest.approx(0.91)
    assert parse_seeds("1-3,7") == [1, 2, 3, 7]
    from dco_local.suite import SuiteError

    for bad in ("", "3-1", "x"):
        with pytest.raises(SuiteError, match="--seeds"):
            parse_seeds(bad)


def test_suite_and_generator_errors_name_the_parameter(tmp_path, capsys):
    from dco_local.cli import main

    assert main(["simulate", "--suite", str(tmp_path / "none")]) == 2
    assert "--suite" in capsys.readouterr().err
    assert main(["scenarios", "generate", "--family", "nope", "--out", str(tmp_path)]) == 2
    assert "--family" in capsys.readouterr().err
    assert main(["scenarios", "generate", "--count", "0", "--out", str(tmp_path)]) == 2
    assert "--count" in capsys.readouterr().err
    assert main(["simulate"]) == 2
    assert "--scenario" in capsys.readouterr().err


def test_generated_families_are_deterministic_valid_and_span_their_ranges(tmp_path):
    from dco_local.scenarios import FAMILIES, generate

    for family in FAMILIES:
        for index in range(1, 6):
            a = generate(family, index, 7)
            assert a == generate(family, index, 7)
            s = scenario_from_dict(a)  # valid scenario files
            assert s.impressions >= 150_000 and s.stats_refresh >= 1000
            if family == "flat":
                assert not a["truth"]["terms"]
            if family == "drift":
                assert 1 <= len(a["drift"]) <= 2
            if family == "realistic":
                assert 0.002 <= sigmoid(a["truth"]["base_logit"]) <= 0.0101 and s.impressions >= 1_000_000
                assert all(abs(t["logit"]) <= 0.8 for t in a["truth"]["terms"])
            if family == "wide":
                assert len(a["slots"]["image"]) >= 30
    assert generate("main", 1, 1) != generate("main", 1, 2)


def test_a_failing_worker_is_named_and_every_worker_ends(monkeypatch):
    import multiprocessing

    from dco_local import simulate as module

    def broken(self, *args, **kwargs):
        raise ZeroDivisionError("boom in a worker")

    # GIVEN the forked workers inherit an engine step that fails
    monkeypatch.setattr(module._Player, "play", broken)
    scenario = scenario_from_dict({**TINY, "contexts": {**TINY["contexts"], "device": {"mobile": 0.6, "desktop": 0.4}}})
    # THEN the run stops with the worker's traceback, and no worker process is left
    with pytest.raises(RuntimeError, match=r"(?s)simulate worker \d failed.*boom in a worker"):
        simulate(scenario, "dco", impressions=2600, seed=5, workers=2)
    assert multiprocessing.active_children() == []


def test_workers_must_be_at_least_one(capsys):
    from dco_local.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["simulate", "--scenario", "retail", "--workers", "0"])
    assert exc.value.code == 2 and "--workers" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["simulate", "--scenario", "retail", "--workers", "abc"])
    assert exc.value.code == 2 and "--workers" in capsys.readouterr().err
    with pytest.raises(ScenarioError, match="--workers"):
        simulate(scenario_from_dict(TINY), "dco", impressions=100, workers=0)


def test_pure_python_flag_plays_the_engine_without_numpy_and_decides_alike(tmp_path):
    """``dco simulate --pure-python`` runs the engine (fit, tables, decisions) on its pure-Python path; on the same
    seed the two runs make the same decisions here (the paths agree to rounding: test_learning_parity.py)."""
    import subprocess
    import sys

    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(dict(TINY, drift=[], impressions=2500)))
    outs = {}
    for flag in ([], ["--pure-python"]):
        proc = subprocess.run([sys.executable, "-m", "dco_local.cli", "simulate", "--scenario", str(path), "--json",
                               "--seed", "4", *flag], capture_output=True, text=True, timeout=600, check=True)
        outs[bool(flag)] = json.loads(proc.stdout)
    assert outs[True]["engine"] == "pure-python" and outs[False]["engine"] == "numpy"
    same = ("clicks", "share_of_oracle", "tail_share_of_oracle", "regret", "holdout_impressions")
    assert {k: outs[True][k] for k in same} == {k: outs[False][k] for k in same}
