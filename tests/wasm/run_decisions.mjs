// Runs the dco decision core inside Pyodide under Node, with no network, and prints the decisions as JSON.
//
//   node tests/wasm/run_decisions.mjs --snapshot SNAPSHOT.msgpack [--stats STATS.msgpack] [--requests requests.json]
//        [--wheels tests/wasm/wheels] [--repeat 20] [--samples 0|1] [--out report.json]
//
// 1. Boots Pyodide from node_modules/pyodide (indexURL on the local disk; any http(s) fetch throws, so a hidden
//    network access fails loudly instead of silently working where a registry happens to be reachable).
// 2. Installs the local wheels (msgpack's pyemscripten wheel, tzdata, dco-runtime) by unpacking them into
//    site-packages: micropip is not part of the npm package (it lives on the CDN), and wheels are zip files.
// 3. Copies decisions.py (the same driver CPython runs) into the Pyodide file system, runs the requests and
//    prints {"boot": {...timings...}, "runtime", "snapshot", "load_ms", "results": [...]}.
import { readFileSync, readdirSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
const REQUIRED_WHEELS = ["msgpack-", "tzdata-", "dco_runtime-"];

export function parseArgs(argv, defaults) {
  const args = { ...defaults };
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, "");
    if (!(key in args) || i + 1 >= argv.length) throw new Error(`unknown or incomplete option ${argv[i]}`);
    args[key] = argv[i + 1];
  }
  return args;
}

export function blockNetwork() {
  const original = globalThis.fetch;
  globalThis.fetch = (input, init) => {
    const url = String(input?.url ?? input);
    if (/^(https?|wss?):/i.test(url)) throw new Error(`network access refused (offline run): ${url}`);
    return original(input, init);
  };
}

export function findWheels(dir) {
  const names = readdirSync(dir).filter((n) => n.endsWith(".whl"));
  return REQUIRED_WHEELS.map((prefix) => {
    const found = names.filter((n) => n.startsWith(prefix)).sort();
    if (found.length === 0) throw new Error(`no ${prefix}*.whl in ${dir} (run .ci/setup-wasm)`);
    return join(dir, found[found.length - 1]);
  });
}

// Boots Pyodide from the local npm package and installs the wheels; returns {pyodide, timings}.
export async function bootPyodide(wheelsDir) {
  const { loadPyodide } = await import("pyodide");
  const t0 = performance.now();
  const pyodide = await loadPyodide({
    indexURL: join(HERE, "node_modules", "pyodide") + "/",
    stdout: (line) => process.stderr.write(line + "\n"),
    stderr: (line) => process.stderr.write(line + "\n"),
  });
  const t1 = performance.now();
  const site = pyodide.runPython("import site; site.getsitepackages()[0]");
  for (const path of findWheels(wheelsDir)) {
    const bytes = readFileSync(path);
    pyodide.unpackArchive(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), "wheel", { extractDir: site });
  }
  pyodide.runPython("import importlib; importlib.invalidate_caches()");
  const t2 = performance.now();
  return { pyodide, timings: { pyodide_boot_ms: t1 - t0, wheels_install_ms: t2 - t1 } };
}

async function main() {
  const args = parseArgs(process.argv.slice(2), {
    snapshot: "",
    stats: "",
    requests: join(HERE, "requests.json"),
    wheels: join(HERE, "wheels"),
    repeat: "20",
    samples: "0",
    out: "",
  });
  if (!args.snapshot) throw new Error("--snapshot is required");
  blockNetwork();
  const { pyodide, timings } = await bootPyodide(resolve(args.wheels));
  const t0 = performance.now();
  pyodide.FS.mkdirTree("/work");
  pyodide.FS.writeFile("/work/decisions.py", readFileSync(join(HERE, "decisions.py")));
  pyodide.FS.writeFile("/work/snapshot.msgpack", readFileSync(resolve(args.snapshot)));
  pyodide.FS.writeFile("/work/requests.json", readFileSync(resolve(args.requests)));
  if (args.stats) pyodide.FS.writeFile("/work/stats.msgpack", readFileSync(resolve(args.stats)));
  pyodide.runPython("import sys; sys.path.insert(0, '/work'); import decisions, dco.engine, dco.render");
  timings.import_ms = performance.now() - t0;
  const reportJson = pyodide.runPython(`
import json
stats = open("/work/stats.msgpack", "rb").read() if ${args.stats ? "True" : "False"} else None
with open("/work/snapshot.msgpack", "rb") as s, open("/work/requests.json", encoding="utf-8") as r:
    report = decisions.run(s.read(), json.load(r), repeat=${Number.parseInt(args.repeat, 10)}, samples=${args.samples === "1" ? "True" : "False"}, stats_blob=stats)
json.dumps(report, sort_keys=True)
`);
  const report = { boot: timings, ...JSON.parse(reportJson) };
  report.runtime.pyodide = pyodide.version;
  report.runtime.node = process.version;
  const text = JSON.stringify(report, null, 1) + "\n";
  if (args.out) writeFileSync(args.out, text);
  else process.stdout.write(text);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((err) => {
    process.stderr.write(`run_decisions: ${err?.stack ?? err}\n`);
    process.exit(1);
  });
}
