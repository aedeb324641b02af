"""The decision core in Pyodide (WebAssembly) under Node gives the same answers as CPython.

GIVEN a snapshot built by CPython from examples/retail (campaign as JSON) and the fixed requests of
requests.json, WHEN run_decisions.mjs runs them in Pyodide (local wheels, no network) and decisions.py runs them
in CPython, THEN:

- AdTheme (theme, branch, score), eligibility (candidate counts), top-N product ids and scores are equal in
  Pyodide, CPython with only the standard library + msgpack, and CPython with numpy/pyroaring (this process);
- the seeded decision inside Pyodide is the same on two runs, and equal (with the rendered ad's digest) to
  CPython's stdlib-only run;
- the learner's decisions (assembled creatives: draws from the model fitted into the stats object, and the
  holdout's uniform picks) are the same in Pyodide, in CPython without numpy and in CPython with numpy: one
  model, numpy only accelerates it (the stats object, models included, is built once in this process and handed
  to every runtime as msgpack bytes).

Needs node, tests/wasm/node_modules (npm ci) and tests/wasm/wheels (both made by .ci/setup-wasm). Without them
the test is skipped with the reason, except under CI=true, where a missing runtime is a failure.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
REQUESTS = HERE / "requests.json"
WHEELS = HERE / "wheels"
TIMEOUT_SECONDS = 600

pytestmark = pytest.mark.slow

def _decisions_module() -> Any:
    spec = importlib.util.spec_from_file_location("dco_wasm_decisions", HERE / "decisions.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


decisions = _decisions_module()


def _missing_runtime() -> str | None:
    node = shutil.which("node")
    if node is None:
        return "node is not installed"
    if not (HERE / "node_modules" / "pyodide" / "pyodide.asm.wasm").exists():
        return "tests/wasm/node_modules/pyodide is missing (run .ci/setup-wasm)"
    for prefix in ("msgpack-", "tzdata-", "dco_runtime-"):
        if not list(WHEELS.glob(f"{prefix}*.whl")):
            return f"tests/wasm/wheels/{prefix}*.whl is missing (run .ci/setup-wasm)"
    stale = _stale_files(max(WHEELS.glob("dco_runtime-*.whl")))
    if stale:
        return (f"the dco-runtime wheel differs from layers/dco/dco ({', '.join(stale[:3])}...): run .ci/setup-wasm;"
                " a file still missing after that is not in layers/dco/pyproject.toml's package-data")
    return None


def _stale_files(wheel: Path) -> list[str]:
    """Files of the package that differ between the wheel and layers/dco/dco (the code under test)."""
    source = ROOT / "layers" / "dco"
    with zipfile.ZipFile(wheel) as zf:
        packed = {n: zf.read(n) for n in zf.namelist() if n.startswith("dco/") and not n.endswith("/")}
    local = {
        str(p.relative_to(source)): p.read_bytes()
        for p in (source / "dco").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    return sorted(name for name in packed.keys() | local.keys() if packed.get(name) != local.get(name))


@pytest.fixture(scope="module")
def runtime_ready() -> None:
    reason = _missing_runtime()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"Pyodide runtime unavailable under CI: {reason}")
    print(f"skipping the WebAssembly tests: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def snapshot_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The retail snapshot, built by CPython from the JSON form of the campaign."""
    import yaml

    campaign = yaml.safe_load((ROOT / "examples" / "retail" / "campaign.yaml").read_text(encoding="utf-8"))
    blob = decisions.build_snapshot(json.dumps(campaign).encode(), (ROOT / "examples" / "retail" / "feed.tsv").read_bytes())
    path = tmp_path_factory.mktemp("wasm") / "retail.msgpack"
    path.write_bytes(blob)
    return path


@pytest.fixture(scope="module")
def requests() -> list[dict[str, Any]]:
    return json.loads(REQUESTS.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def stats_path(snapshot_path: Path) -> Path:
    """The stats object (counters and fitted models) every runtime decides with, built here with numpy."""
    import msgpack
    from dco.snapshot import load_snapshot

    obj = decisions.synthetic_stats_object(load_snapshot(snapshot_path.read_bytes()))
    assert obj["models"]["cr-retail"]["click"]["memories"]  # a real model to draw from
    path = snapshot_path.with_name("stats.msgpack")
    path.write_bytes(msgpack.packb(obj, use_bin_type=True))
    return path


@pytest.fixture(scope="module")
def pyodide_report(runtime_ready: None, snapshot_path: Path, stats_path: Path) -> dict[str, Any]:
    out = snapshot_path.with_name("pyodide.json")
    proc = subprocess.run(
        ["node", str(HERE / "run_decisions.mjs"), "--snapshot", str(snapshot_path), "--stats", str(stats_path),
         "--requests", str(REQUESTS),
         "--wheels", str(WHEELS), "--repeat", "3", "--out", str(out)],
        capture_output=True, text=True, timeout=TIMEOUT_SECONDS, cwd=HERE,
    )
    assert proc.returncode == 0, f"run_decisions.mjs failed:\n{proc.stderr[-4000:]}"
    return json.loads(out.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def minimal_report(snapshot_path: Path, stats_path: Path) -> dict[str, Any]:
    proc = subprocess.run(
        # CPython with the standard library + msgpack only: the optional dependencies are blocked before dco loads.
        [sys.executable, str(HERE / "decisions.py"), "run", str(snapshot_path), str(REQUESTS), "--repeat", "3",
         "--stats", str(stats_path), "--minimal"],
        capture_output=True, text=True, timeout=TIMEOUT_SECONDS, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def inprocess_report(snapshot_path: Path, stats_path: Path, requests: list[dict[str, Any]]) -> dict[str, Any]:
    return decisions.run(snapshot_path.read_bytes(), requests, repeat=3, stats_blob=stats_path.read_bytes())


def test_pyodide_runs_the_stdlib_core_from_local_wheels(pyodide_report: dict[str, Any]) -> None:
    runtime = pyodide_report["runtime"]
    assert runtime["platform"] == "emscripten"
    assert runtime["accelerators"] == {"numpy": False, "pyroaring": False}
    assert runtime["template_engine"] == "mini"


def test_minimal_cpython_run_has_no_optional_dependencies(minimal_report: dict[str, Any]) -> None:
    assert minimal_report["runtime"]["accelerators"] == {"numpy": False, "pyroaring": False}
    assert minimal_report["runtime"]["template_engine"] == "mini"


def test_requests_cover_every_branch(minimal_report: dict[str, Any], requests: list[dict[str, Any]]) -> None:
    results = minimal_report["results"]
    assert [r["name"] for r in results] == [r["name"] for r in requests]
    branches = {r["targeting"]["branch"] if r["targeting"] else None for r in results}
    assert branches == {"tree", "else", "tag", None}
    assert any(e["top_n"] >= 200 for r in results for e in r["eligibility"].values())
    assert {r["decision"]["creative_type"] for r in results} >= {"assembled", "dynamic", "standard", "video"}


def test_targeting_eligibility_scores_and_top_n_equal_cpython(
    pyodide_report: dict[str, Any], minimal_report: dict[str, Any], inprocess_report: dict[str, Any]
) -> None:
    wasm = decisions.comparable(pyodide_report, with_decisions=False)
    assert wasm == decisions.comparable(minimal_report, with_decisions=False)
    assert wasm == decisions.comparable(inprocess_report, with_decisions=False)


def test_seeded_rotation_is_reproducible_in_pyodide(pyodide_report: dict[str, Any]) -> None:
    for result in pyodide_report["results"]:
        assert result["decision"] == result["decision_again"], result["name"]


def test_seeded_decisions_and_markup_equal_cpython_stdlib(
    pyodide_report: dict[str, Any], minimal_report: dict[str, Any]
) -> None:
    assert decisions.comparable(pyodide_report, with_decisions=True) == decisions.comparable(
        minimal_report, with_decisions=True
    )


def test_learning_decisions_equal_in_pyodide_cpython_stdlib_and_cpython_numpy(
    pyodide_report: dict[str, Any], minimal_report: dict[str, Any], inprocess_report: dict[str, Any]
) -> None:
    wasm = decisions.learning_decisions(pyodide_report)
    assert sum(1 for d in wasm if d["variants"]) >= 5  # assembled decisions drawn from the model
    assert wasm == decisions.learning_decisions(minimal_report)
    assert wasm == decisions.learning_decisions(inprocess_report)
