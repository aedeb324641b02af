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
