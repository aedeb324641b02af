"""numpy is an accelerator, never a different model: on the counters of simulated scenarios, the numpy and the
pure-Python paths fit the same model (to rounding) and draw the same decision tables (equal rows, or rows whose
winners tie to 1e-9).

The scenarios are generated (dco scenarios generate's families: main effects, pairs, contexts with a constant or
absent dimension), played with numpy for a few thousand impressions; local/dco_local/parity.py compares."""

from __future__ import annotations

import json

import pytest
from dco._accel import np

pytestmark = pytest.mark.skipif(np is None, reason="compares the numpy path with the pure-Python one")


@pytest.mark.parametrize(("family", "index"), [("main", 1), ("pairs", 2), ("context", 3), ("drift", 1)])
def test_both_paths_fit_the_same_model_and_draw_the_same_tables(tmp_path, family, index):
    from dco_local.parity import TIE, scenario_parity
    from dco_local.scenarios import generate

    path = tmp_path / f"{family}.json"
    path.write_text(json.dumps(generate(family, index, 1)))
    found = scenario_parity(str(path), impressions=12_000)
    assert found["rows"] >= 256
    assert found["largest_model_difference"] < 1e-9
    assert found["equal"] / found["rows"] >= 0.999
    assert found["differing"] == found["differing_ties"]  # any difference is a floating-point tie
    assert found["largest_gap_where_differing"] < TIE


def test_the_counter_based_normals_are_the_same_numbers_on_both_paths():
    from dco.learning.draws import _normals_np, normals_py

    idents = [3, 2**63 + 5, 12345678901234567]
    fast = _normals_np(987654321, 50, idents)
    slow = normals_py(987654321, 50, idents)
    assert float(abs(fast - np.asarray(slow)).max()) < 1e-12
    assert abs(float(fast.mean())) < 0.5 and 0.6 < float(fast.std()) < 1.4


def test_dco_parity_over_a_suite_directory_prints_the_total_and_exits_0_when_every_difference_is_a_tie(
        tmp_path, capsys):
    from dco_local.cli import main
    from dco_local.scenarios import generate

    for family in ("flat", "context"):
        (tmp_path / f"{family}.json").write_text(json.dumps(generate(family, 1, 2)))
    assert main(["parity", "--suite", str(tmp_path), "--impressions", "4000", "--seeds", "1,2", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert [(r["scenario"], r["seed"]) for r in found["runs"]] == [
        ("context.json", 1), ("context.json", 2), ("flat.json", 1), ("flat.json", 2)]
    total = found["total"]
    assert total["rows"] == sum(r["rows"] for r in found["runs"]) >= 4 * 256
    assert total["equal_share"] >= 0.999
    assert total["differing"] == total["differing_ties"]


@pytest.mark.parametrize(("argv", "message"), [
    (["--suite", "{tmp}/none"], "is not a directory with scenario files"),
    (["--suite", "{tmp}", "--seeds", "x"], "--seeds"),
    (["--suite", "{tmp}", "--impressions", "10"], "--impressions must be at least 1000"),
])
def test_dco_parity_names_the_bad_argument_and_exits_2(tmp_path, capsys, argv, message):
    from dco_local.cli import main
    from dco_local.scenarios import generate

    (tmp_path / "flat.json").write_text(json.dumps(generate("flat", 1, 1)))
    assert main(["parity"] + [a.replace("{tmp}", str(tmp_path)) for a in argv]) == 2
    assert message in capsys.readouterr().err
