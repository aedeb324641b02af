// Measures the edge worker under Node: the size of what ships, the cold boot, and per-decision p50/p99; with
// --python it also times the same driver (tests/wasm/decisions.py, same snapshot, same requests) in CPython with
// only the standard library + msgpack and in CPython with numpy/pyroaring, for a side-by-side figure.
//
//   node examples/edge/measure.mjs --snapshot /tmp/retail.msgpack [--rounds 20] [--python .venv/bin/python]
//
// A program that prints figures, not a test: compare the rows of one run, not runs on different machines.
import { spawnSync } from "node:child_process";
import { readFileSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

import { DEFAULTS, PYODIDE_CORE_FILES, createWorker, shippedWheels } from "./worker.mjs";

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, "..", "..");
const REQUESTS = join(ROOT, "tests", "wasm", "requests.json");
const DRIVER = join(ROOT, "tests", "wasm", "decisions.py");

function parseArgs(argv) {
  const args = { snapshot: "", rounds: "20", python: "" };
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, "");
    if (!(key in args) || i + 1 >= argv.length) throw new Error(`unknown or incomplete option ${argv[i]}`);
    args[key] = argv[i + 1];
  }
  if (!args.snapshot) throw new Error("--snapshot is required");
  return args;
}

function stats(samples) {
  const s = [...samples].sort((a, b) => a - b);
  const at = (q) => s[Math.min(s.length - 1, Math.floor(s.length * q))];
  return { n: s.length, p50: at(0.5), p99: at(0.99), mean: s.reduce((a, b) => a + b, 0) / s.length };
}

function pooled(report, key) {
  return stats(report.results.flatMap((r) => r.samples_us[key]));
}

function sizes(snapshot) {
  const rows = [];
  for (const name of PYODIDE_CORE_FILES) rows.push([`pyodide/${name}`, join(DEFAULTS.pyodideDir, name)]);
  for (const wheel of shippedWheels(DEFAULTS.wheelsDir)) rows.push([`wheels/${wheel.split("/").pop()}`, wheel]);
  rows.push(["edge/worker.mjs", join(HERE, "worker.mjs")], ["edge/edge_app.py", join(HERE, "edge_app.py")]);
  rows.push(["snapshot", snapshot]);
  return rows.map(([label, path]) => ({
    label,
    bytes: statSync(path).size,
    gzip: gzipSync(readFileSync(path), { level: 9 }).length,
  }));
}

const fmtUs = (x) => `${x.toFixed(0).padStart(7)} us`;

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const snapshot = resolve(args.snapshot);
  const rounds = Number.parseInt(args.rounds, 10);
  const requests = JSON.parse(readFileSync(REQUESTS, "utf-8"));

  console.log("== what ships");
  const files = sizes(snapshot);
  for (const f of files) console.log(`${f.label.padEnd(62)} ${String(f.bytes).padStart(10)} B  gzip ${String(f.gzip).padStart(9)} B`);
  const total = files.reduce((a, f) => a + f.bytes, 0);
  const totalGz = files.reduce((a, f) => a + f.gzip, 0);
  console.log(`${"total".padEnd(62)} ${String(total).padStart(10)} B  gzip ${String(totalGz).padStart(9)} B`);

  console.log("\n== cold boot (Node, one isolate)");
  const t0 = performance.now();
  const worker = await createWorker({ snapshot });
  const boot = performance.now() - t0;
  for (const [k, v] of Object.entries(worker.timings)) console.log(`${k.padEnd(22)} ${v.toFixed(0).padStart(6)} ms`);
  console.log(`${"total".padEnd(22)} ${boot.toFixed(0).padStart(6)} ms`);

  console.log(`\n== per decision through the worker (/v1/ad: parse, decide, sign, render), ${requests.length} requests x ${rounds}`);
  const urls = requests.map((r) => `/v1/ad?${new URLSearchParams(r.query)}`);
  for (let i = 0; i < urls.length; i++) worker.handle(urls[i], requests[i].headers); // warm-up
  const samples = [];
  for (let round = 0; round < rounds; round++) {
    for (let i = 0; i < urls.length; i++) {
      const t = performance.now();
      const out = worker.handle(urls[i], requests[i].headers);
      samples.push((performance.now() - t) * 1000);
      if (out.status >= 500) throw new Error(`${urls[i]}: HTTP ${out.status}`);
    }
  }
  const e2e = stats(samples);
  console.log(`p50 ${fmtUs(e2e.p50)}   p99 ${fmtUs(e2e.p99)}   mean ${fmtUs(e2e.mean)}   (n=${e2e.n})`);

  console.log(`\n== same driver, same snapshot and requests (tests/wasm/decisions.py, ${rounds} decisions per request)`);
  const py = worker.pyodide;
  py.FS.mkdirTree("/measure");
  py.FS.writeFile("/measure/decisions.py", readFileSync(DRIVER));
  py.FS.writeFile("/measure/requests.json", readFileSync(REQUESTS));
  const wasmReport = JSON.parse(
    py.runPython(`
import json, sys
sys.path.insert(0, "/measure")
import decisions
with open("/edge/snapshot.msgpack", "rb") as s, open("/measure/requests.json") as r:
    out = json.dumps(decisions.run(s.read(), json.load(r), repeat=${rounds}, samples=True))
out
`),
  );
  const rows = [["Pyodide " + py.version + " (Node " + process.version + ")", wasmReport]];
  if (args.python) {
    for (const [label, extra] of [["CPython, stdlib + msgpack only", ["--minimal"]], ["CPython + numpy/pyroaring", []]]) {
      const proc = spawnSync(
        args.python,
        [DRIVER, "run", snapshot, REQUESTS, "--repeat", String(rounds), "--samples", ...extra],
        { encoding: "utf-8", maxBuffer: 1 << 28 },
      );
      if (proc.status !== 0) throw new Error(`${label}: ${proc.stderr}`);
      const report = JSON.parse(proc.stdout);
      rows.push([`${label} ${report.runtime.python}`, report]);
    }
  }
  console.log(`${"runtime".padEnd(44)} ${"decide p50".padStart(11)} ${"p99".padStart(10)} ${"+render p50".padStart(12)} ${"p99".padStart(10)}`);
  const base = pooled(rows[0][1], "decide").p50;
  for (const [label, report] of rows) {
    const d = pooled(report, "decide");
    const r = pooled(report, "decide_render");
    const ratio = (base / d.p50).toFixed(2);
    console.log(`${label.padEnd(44)} ${fmtUs(d.p50)} ${fmtUs(d.p99)} ${fmtUs(r.p50)} ${fmtUs(r.p99)}   (Pyodide / this: ${ratio}x)`);
  }
  worker.close();
}

main().catch((err) => {
  console.error(`measure: ${err?.stack ?? err}`);
  process.exit(1);
});
