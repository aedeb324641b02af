"""``dco bench coldstart``: a fresh Python process imports the decide handler and serves its first decision.

Setup (parent process): a :class:`dco_local.stack.LocalStack` (moto server over HTTP) with the retail campaign and
a generated feed of ``--products`` rows dropped into the bucket; ingest builds and publishes the snapshot (the
pointer swap), as in AWS.

What runs is what ``sam build`` ships: the dco layer is built with its own recipe (``make build-DcoLayer`` of
layers/dco/Makefile, ``ARTIFACTS_DIR`` a temporary folder) and functions/decide is copied without any
``__pycache__``; the children import both from there with ``PYTHONDONTWRITEBYTECODE=1``, because Lambda's
``/opt`` and ``/var/task`` are read-only: a module the artifact carries no bytecode for is compiled from source on
every cold start, and so it is here (``layer_pyc`` counts the ``.pyc`` files the built layer holds). Before, the
children imported layers/dco from the source tree, so the figure depended on whether an earlier run had left
``__pycache__`` folders there. Third-party packages come from the virtualenv, with its bytecode.

Measured (each of ``--repeat`` fresh child processes, ``python -c``, environment = the functions' environment
pointing at the moto server):

- ``interpreter_ms``: from spawning the child to its first line of Python (CPython start-up and site; in Lambda
  this is the runtime's own init, not ours);
- ``import_ms``: executing functions/decide/app.py (Powertools, the ``dco`` runtime, module-scope objects);
- ``first_decision_ms``: the handler called with an API Gateway v2 event (events/decide/ad_request.json): the
  S3 client, the pointer, snapshot and stats GETs, ``load_snapshot``, the ``Engine``, the tracking keys from
  SSM, the decision and its rendering; ``total_ms`` = import + first decision.
- breakdown of the first decision (the handler's replaceable ``get_cache``/``get_keys`` factories wrapped with
  timers in the child; the engine's own code is not touched): ``s3_client_ms``, ``pointer_fetch_ms``,
  ``snapshot_fetch_ms``, ``load_snapshot_ms``, ``engine_build_ms``, ``stats_fetch_ms``, ``keys_ms`` (SSM),
  ``decide_render_ms`` (the rest: parse, decide, render, logging).

Baseline in the same run: the child's floor, a process that only imports what any boto3 Lambda imports
(``boto3``) and ``msgpack``. decide itself no longer imports boto3 (only botocore), so the floor is no lower
bound any more: it is kept as the run's reference for how fast the machine was (it moves with the load like the
other figures). One more child runs with ``python -X importtime`` and ``top_imports`` lists the slowest imports
(cumulative ms).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from dco_local.bench import RETAIL_CAMPAIGN, ROOT, _progress

CHILD = r"""
import time
T0 = time.perf_counter()
W0 = time.time()
import importlib.util, json, sys
t = time.perf_counter()
spec = importlib.util.spec_from_file_location("decide_app", sys.argv[1])
app = importlib.util.module_from_spec(spec)
sys.modules["decide_app"] = app
spec.loader.exec_module(app)
import_ms = (time.perf_counter() - t) * 1000
marks = {}

def timed(name, fn):
    def wrapper(*args, **kwargs):
        s = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            marks[name] = marks.get(name, 0.0) + (time.perf_counter() - s) * 1000
    return wrapper

class TimedSource:
    def __init__(self, inner):
        self.inner = inner
    def fetch(self, key, etag=None):
        kind = "pointer" if key.startswith("pointers/") else "stats" if key.startswith("stats/") else "snapshot"
        return timed(kind + "_fetch_ms", self.inner.fetch)(key, etag)

def get_cache():
    if "cache" not in app._state:
        from dco.snapshot import load_snapshot
        from dco.warm import WarmCache
        import dco.warm
        dco.warm.Engine = timed("engine_build_ms", dco.warm.Engine)
        source = TimedSource(timed("s3_client_ms", app.get_store)())
        app._state["cache"] = WarmCache(
            source=source,
            clock=lambda: app.clock().timestamp(),
            refresh_seconds=app._settings().refresh_seconds,
            on_failure=app._refresh_failed,
            loader=timed("load_snapshot_ms", load_snapshot),
        )
    return app._state["cache"]

if sys.argv[3] == "breakdown":
    app.get_cache = get_cache
    app.get_keys = timed("keys_ms", app.get_keys)

class Context:
    function_name = "decide"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:decide"
    aws_request_id = "00000000-0000-0000-0000-000000000001"
    def get_remaining_time_in_millis(self):
        return 10000

event = json.load(open(sys.argv[2]))
t = time.perf_counter()
response = app.handler(event, Context())
first_ms = (time.perf_counter() - t) * 1000
t = time.perf_counter()
second = app.handler(event, Context())
second_ms = (time.perf_counter() - t) * 1000
print(json.dumps({"w0": W0, "import_ms": import_ms, "first_decision_ms": first_ms, "second_decision_ms": second_ms,
                  "status": response.get("statusCode"), "bytes": len(response.get("body") or ""),
                  "marks": marks}))
"""

FLOOR = r"""
import time
W0 = time.time()
t = time.perf_counter()
import boto3, msgpack, json
print(json.dumps({"w0": W0, "import_ms": (time.perf_counter() - t) * 1000}))
"""


def _child(code: str, args: list[str], env: dict[str, str], flags: tuple[str, ...] = ()) -> tuple[dict[str, Any], str]:
    spawned = time.time()
    proc = subprocess.run(
        [sys.executable, *flags, "-c", code, *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child failed ({proc.returncode}): {proc.stderr[-2000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["interpreter_ms"] = (out.pop("w0") - spawned) * 1000
    return out, proc.stderr


def _importtime_top(stderr: str, n: int = 12) -> list[list[Any]]:
    """Top-level (least indented) imports by cumulative time from ``-X importtime`` output."""
    rows = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        fields = line.split(":", 1)[1].split("|")
        if len(fields) != 3:
            continue
        raw = fields[2]
        depth = len(raw) - len(raw.lstrip(" "))
        rows.append((depth, raw.strip(), int(fields[1].strip())))
    if not rows:
        return []
    shallow = min(d for d, _, _ in rows)
    # the app module's direct imports are one level under the shallowest (the -c script's own imports)
    picked = [(name, us) for d, name, us in rows if d <= shallow + 2]
    picked.sort(key=lambda r: -r[1])
    return [[name, round(us / 1000, 1)] for name, us in picked[:n]]


def build_artifacts(into: Path) -> tuple[Path, Path, str]:
    """``(layer python folder, decide function folder, how the layer was built)`` as ``sam build`` makes them."""
    layer = into / "layer"
    recipe = "make build-DcoLayer"
    try:
        subprocess.run(
            # PYTHON: should the recipe byte-compile, it does so for the interpreter the children run
            ["make", "-s", "-C", str(ROOT / "layers" / "dco"), "build-DcoLayer", f"ARTIFACTS_DIR={layer}",
             f"PYTHON={sys.executable}"],
            check=True, capture_output=True, text=True, timeout=300,
        )
    except (OSError, subprocess.CalledProcessError) as exc:  # no make: the Makefile's copy, without bytecode
        _progress(f"make build-DcoLayer failed ({exc}); copying layers/dco/dco instead")
        shutil.rmtree(layer, ignore_errors=True)
        shutil.copytree(ROOT / "layers" / "dco" / "dco", layer / "python" / "dco",
                        ignore=shutil.ignore_patterns("__pycache__"))
        recipe = "copy of layers/dco/dco (make failed)"
    function = into / "decide"
    shutil.copytree(ROOT / "functions" / "decide", function, ignore=shutil.ignore_patterns("__pycache__"))
    return layer / "python", function, recipe


def bench_coldstart(products: int = 100_000, repeat: int = 7) -> dict[str, Any]:
    repeat = max(5, repeat)
    event_path = ROOT / "events" / "decide" / "ad_request.json"
    build_dir = Path(tempfile.mkdtemp(prefix="dco-coldstart-"))
    try:
        return _bench(products, repeat, event_path, build_dir)
    finally:
        shutil.rmtree(build_dir, ignore_errors=True)


def _bench(products: int, repeat: int, event_path: Path, build_dir: Path) -> dict[str, Any]:
    from dco_local.examples import generate_retail_feed
    from dco_local.stack import LocalStack

    layer_path, function_path, recipe = build_artifacts(build_dir)
    app_path = function_path / "app.py"
    layer_pyc = sum(1 for _ in layer_path.rglob("*.pyc"))
    _progress(f"generating a {products:,}-product feed ...")
    feed = generate_retail_feed(products, seed=7)
    _progress("starting the local stack; ingest publishes the snapshot ...")
    with LocalStack(refresh_seconds=60) as stack:
        stack.put_campaign("retail-demo", RETAIL_CAMPAIGN)
        stack.put_feed("retail-demo", feed)
        pointer = stack.wait_published("retail-demo", timeout=900)
        head = stack.client("s3").head_object(Bucket=stack.bucket, Key=pointer["key"])
        env = {**os.environ, **stack.function_environment(), "PYTHONDONTWRITEBYTECODE": "1"}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(layer_path), env.get("PYTHONPATH")]))
        runs, floors = [], []
        for i in range(repeat):
            _progress(f"fresh process {i + 1}/{repeat} ...")
            floors.append(_child(FLOOR, [], env)[0])
            runs.append(_child(CHILD, [str(app_path), str(event_path), "breakdown"], env)[0])
        plain = [_child(CHILD, [str(app_path), str(event_path), "plain"], env)[0] for _ in range(3)]
        _progress("one more with -X importtime ...")
        _, importtime = _child(CHILD, [str(app_path), str(event_path), "plain"], env, ("-X", "importtime"))
    bad = [r for r in runs + plain if r["status"] != 200]
    if bad:
        raise RuntimeError(f"first decision did not serve: {bad[0]}")

    def med(key: str, rows: list[dict[str, Any]] = runs) -> float:
        return round(statistics.median(r[key] for r in rows), 1)

    def med_mark(key: str) -> float:
        return round(statistics.median(r["marks"].get(key, 0.0) for r in runs), 1)

    totals = [r["import_ms"] + r["first_decision_ms"] for r in runs]
    marks = ("s3_client_ms", "pointer_fetch_ms", "snapshot_fetch_ms", "load_snapshot_ms", "engine_build_ms",
             "stats_fetch_ms", "keys_ms")
    breakdown = {key: med_mark(key) for key in marks}
    rest = [r["first_decision_ms"] - sum(r["marks"].get(k, 0.0) for k in marks) for r in runs]
    breakdown["decide_render_ms"] = round(statistics.median(rest), 1)
    return {
        "products": products,
        "layer": recipe,
        "layer_pyc": layer_pyc,
        "snapshot_bytes": head["ContentLength"],
        "processes": repeat,
        "import_ms": med("import_ms"),
        "first_decision_ms": med("first_decision_ms"),
        "total_ms": round(statistics.median(totals), 1),
        "total_max_ms": round(max(totals), 1),
        "total_unwrapped_ms": round(statistics.median(r["import_ms"] + r["first_decision_ms"] for r in plain), 1),
        "interpreter_ms": med("interpreter_ms"),
        "second_decision_ms": med("second_decision_ms"),
        **breakdown,
        "floor_boto3_msgpack_import_ms": med("import_ms", floors),
        "top_imports": _importtime_top(importtime),
    }
