// The edge entry point: a Pyodide-based worker that serves /v1/ad from a bundled snapshot.
//
//   createWorker(options) -> { handle(url, headers) -> {status, headers, body}, refreshStats(), close() }
//
// The same shape fits an edge runtime's fetch handler (Cloudflare Python Workers, Fastly/Deno/Node edges with a
// Pyodide bundle): boot once per isolate, then one synchronous Python call per request. Under Node it also runs
// as a local HTTP server for the demo:
//
//   node examples/edge/worker.mjs --snapshot /tmp/retail.msgpack [--port 8787] [--stats-url URL|PATH]
//        [--refresh-seconds 30] [--base-url https://ads.example.com] [--wheels tests/wasm/wheels]
//   curl 'http://127.0.0.1:8787/v1/ad?exp=retail-main&size=300x250&country=US&region=pnw&t1=outerwear'
//
// What ships: the Pyodide core (pyodide.mjs, pyodide.asm.mjs, pyodide.asm.wasm, python_stdlib.zip,
// pyodide-lock.json), three wheels (msgpack, tzdata, dco-runtime), this file, edge_app.py and the snapshot.
// Nothing is fetched at boot (no CDN): any http(s) fetch other than the stats URL is refused.
// Stats: fetched every --refresh-seconds from the regional API / S3 with If-None-Match (ETag); a failed fetch
// keeps the previous stats. Tracking writes do not happen here: the markup's signed URLs point at --base-url.
import { randomInt } from "node:crypto";
import { readFileSync, readdirSync } from "node:fs";
import { createServer } from "node:http";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, "..", "..");
export const DEFAULTS = {
  pyodideDir: join(ROOT, "tests", "wasm", "node_modules", "pyodide"),
  wheelsDir: join(ROOT, "tests", "wasm", "wheels"),
  baseUrl: "https://ads.example.com",
  kid: "edge1",
  // Demo only: a real deployment injects the tracking-token key from its secret store (env binding).
  signingKey: process.env.DCO_EDGE_SIGNING_KEY ?? "demo-edge-signing-key-change-me!",
  refreshSeconds: 30,
};
// The files of the Pyodide core package a worker loads (the rest of the npm package is not needed).
export const PYODIDE_CORE_FILES = [
  "pyodide.mjs",
  "pyodide.asm.mjs",
  "pyodide.asm.wasm",
  "python_stdlib.zip",
  "pyodide-lock.json",
];
const WHEEL_PREFIXES = ["msgpack-", "tzdata-", "dco_runtime-"];

export function shippedWheels(wheelsDir) {
  const names = readdirSync(wheelsDir).filter((n) => n.endsWith(".whl"));
  return WHEEL_PREFIXES.map((prefix) => {
    const found = names.filter((n) => n.startsWith(prefix)).sort();
    if (found.length === 0) throw new Error(`no ${prefix}*.whl in ${wheelsDir} (run .ci/setup-wasm)`);
    return join(wheelsDir, found[found.length - 1]);
  });
}

function refuseNetworkExcept(allowed) {
  const original = globalThis.fetch;
  globalThis.fetch = (input, init) => {
    const url = String(input?.url ?? input);
    if (/^(https?|wss?):/i.test(url) && url !== allowed) throw new Error(`network access refused: ${url}`);
    return original(input, init);
  };
}

const PY_GLUE = `
import json, sys
sys.path.insert(0, "/edge")
from edge_app import EdgeApp

def _make(snapshot_path, base_url, kid, key):
    global app
    with open(snapshot_path, "rb") as f:
        app = EdgeApp(f.read(), base_url=base_url, keys={kid: key.encode()}, kid=kid)
    return json.dumps(app.describe())

def _handle(path, query_json, headers_json, now_ms, seed):
    status, content_type, body = app.handle(path, json.loads(query_json), json.loads(headers_json), now_ms, seed)
    return json.dumps([status, content_type, body])

def _set_stats(path):
    with open(path, "rb") as f:
        return app.set_stats(f.read())
`;

// Boots Pyodide, installs the wheels, loads the snapshot. Returns the worker; `timings` says where boot time went.
export async function createWorker(options) {
  const opts = { ...DEFAULTS, ...options };
  refuseNetworkExcept(/^https?:/i.test(opts.statsUrl ?? "") ? opts.statsUrl : null);
  const timings = {};
  let t = performance.now();
  const { loadPyodide } = await import(pathToFileURL(join(opts.pyodideDir, "pyodide.mjs")).href);
  const pyodide = await loadPyodide({ indexURL: opts.pyodideDir + "/" });
  timings.pyodide_boot_ms = performance.now() - t;

  t = performance.now();
  const site = pyodide.runPython("import site; site.getsitepackages()[0]");
  for (const wheel of shippedWheels(opts.wheelsDir)) {
    const bytes = readFileSync(wheel);
    pyodide.unpackArchive(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), "wheel", {
      extractDir: site,
    });
  }
  pyodide.FS.mkdirTree("/edge");
  pyodide.FS.writeFile("/edge/edge_app.py", readFileSync(join(HERE, "edge_app.py")));
  pyodide.runPython("import importlib; importlib.invalidate_caches()");
  timings.wheels_install_ms = performance.now() - t;

  t = performance.now();
  pyodide.runPython(PY_GLUE);
  timings.import_ms = performance.now() - t;

  t = performance.now();
  pyodide.FS.writeFile("/edge/snapshot.msgpack", readFileSync(opts.snapshot));
  const make = pyodide.globals.get("_make");
  const described = JSON.parse(make("/edge/snapshot.msgpack", opts.baseUrl, opts.kid, opts.signingKey));
  make.destroy();
  timings.snapshot_load_ms = performance.now() - t;

  const handlePy = pyodide.globals.get("_handle");
  const setStatsPy = pyodide.globals.get("_set_stats");
  let etag = null;
  let timer = null;

  function handle(url, headers = {}) {
    const parsed = new URL(url, "http://edge.local");
    const query = Object.fromEntries(parsed.searchParams);
    const flat = {};
    for (const [name, value] of Object.entries(headers)) flat[name] = Array.isArray(value) ? value.join(", ") : String(value);
    const [status, contentType, body] = JSON.parse(
      handlePy(parsed.pathname, JSON.stringify(query), JSON.stringify(flat), Date.now(), randomInt(2 ** 47)),
    );
    return { status, headers: { "content-type": contentType, "cache-control": "no-store" }, body };
  }

  // One conditional fetch of the stats object; true when new stats were installed.
  async function refreshStats() {
    if (!opts.statsUrl) return false;
    let bytes;
    if (/^https?:/i.test(opts.statsUrl)) {
      const response = await fetch(opts.statsUrl, { headers: etag ? { "if-none-match": etag } : {} });
      if (response.status === 304) return false;
      if (!response.ok) throw new Error(`stats fetch: HTTP ${response.status}`);
      etag = response.headers.get("etag");
      bytes = new Uint8Array(await response.arrayBuffer());
    } else {
      bytes = readFileSync(opts.statsUrl); // demo: a local stats file
    }
    pyodide.FS.writeFile("/edge/stats.bin", bytes);
    setStatsPy("/edge/stats.bin");
    return true;
  }

  if (opts.statsUrl && opts.refreshSeconds > 0) {
    await refreshStats().catch((err) => console.error(`stats refresh failed, serving without: ${err.message}`));
    timer = setInterval(() => {
      refreshStats().catch((err) => console.error(`stats refresh failed, keeping the last stats: ${err.message}`));
    }, opts.refreshSeconds * 1000);
    timer.unref();
  }

  return {
    pyodide,
    timings,
    described,
    handle,
    refreshStats,
    close() {
      if (timer) clearInterval(timer);
      handlePy.destroy();
      setStatsPy.destroy();
    },
  };
}

function parseArgs(argv) {
  const args = { port: "8787", snapshot: "", "stats-url": "", "refresh-seconds": String(DEFAULTS.refreshSeconds),
    "base-url": DEFAULTS.baseUrl, wheels: DEFAULTS.wheelsDir, pyodide: DEFAULTS.pyodideDir };
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, "");
    if (!(key in args) || i + 1 >= argv.length) throw new Error(`unknown or incomplete option ${argv[i]}`);
    args[key] = argv[i + 1];
  }
  if (!args.snapshot) throw new Error("--snapshot is required (build one: see docs/edge.md)");
  return args;
}

async function serve() {
  const args = parseArgs(process.argv.slice(2));
  const worker = await createWorker({
    snapshot: resolve(args.snapshot),
    statsUrl: args["stats-url"] || null,
    refreshSeconds: Number(args["refresh-seconds"]),
    baseUrl: args["base-url"],
    wheelsDir: resolve(args.wheels),
    pyodideDir: resolve(args.pyodide),
  });
  const server = createServer((req, res) => {
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD" }).end();
      return;
    }
    try {
      const out = worker.handle(req.url, req.headers);
      res.writeHead(out.status, out.headers).end(req.method === "HEAD" ? undefined : out.body);
    } catch (err) {
      console.error(err);
      res.writeHead(500, { "content-type": "application/json" }).end('{"error":"internal"}');
    }
  });
  server.listen(Number(args.port), "127.0.0.1", () => {
    const boot = Object.entries(worker.timings).map(([k, v]) => `${k}=${v.toFixed(0)}`).join(" ");
    console.log(`edge worker: ${worker.described.campaign} ${worker.described.snapshot.slice(0, 19)}...`);
    console.log(`boot: ${boot}`);
    console.log(`listening on http://127.0.0.1:${args.port}/v1/ad`);
  });
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  serve().catch((err) => {
    console.error(`worker: ${err?.stack ?? err}`);
    process.exit(1);
  });
}
