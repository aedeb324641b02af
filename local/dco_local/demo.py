"""``dco demo``: the main job. The whole product on one machine, learning in front of you.

Data flow::

    LocalStack (moto on loopback, HTTP gateway, pumps)
      put examples/retail/campaign.yaml + feed.tsv into S3 ──ingest──> snapshot published
    simulated audience (Audience: the scenario's context mix and click truth, dco_local.simulate.Truth)
      per impression, from K worker threads over keep-alive HTTP:
        GET /v1/ad?c=retail-demo&exp=retail-main&fmt=json&region=..&weather=..&country=US&uid=..&seed=..
            (device from a real User-Agent: iPhone -> mobile, Windows Chrome -> desktop)
        the ad's tracking token (signed by decide; verified here with the stack's key) says what was served
            (the component variants) and whether the viewer is in the holdout group
        GET the impression tracker (200) ──track──> Events
        click ~ Bernoulli(truth(context, served variants)): GET the click URL (302) ──track──> Events
      pumps (background): Events stream ──fold──> Counters stream ──publish_stats──> stats object in S3
      decide re-reads the stats object every ``refresh_seconds``: the next decisions use what was learned
    after the last impression: the pumps are drained; the figures come from the published stats object (splits
    holdout/optimized; per component the sums of the context counters and the fitted model's effects, through
    ``dco report``'s build_report) and are cross-checked against what the audience sent
      ──> summary (console table or --json), report folder: index.html (plots), stats.json, components.html

Pacing. The audience never runs more than ``max_lag`` impressions ahead of the published stats (the serverless
lag: fold and publish-stats run behind the beacons). On a machine where the pumps are slower than the HTTP
path, the demo slows down to the rate the whole loop sustains instead of learning from stale stats.

Lift. ``lift = ctr_optimized / ctr_holdout - 1`` from the counters; the 95 % interval is the delta method on the
log of the CTR ratio (:func:`dco_local.evaluate.ratio_lift`): ``se = sqrt((1-p1)/(n1 p1) + (1-p0)/(n0 p0))``,
interval ``ratio * exp(+-1.96 se) - 1``. It covers the whole run, learning phase included, so it understates
the lift the optimizer reaches at the end (the learning curve shows that).

Determinism. The same seed gives the same audience (contexts, viewers, decision seeds, click draws). Decisions
also depend on which stats were published when they were made, so figures vary a little between runs.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import html
import http.client
import json
import logging
import math
import os
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import numpy as np

__all__ = ["DEMO_SCENARIO", "Audience", "Visit", "run_demo", "add_parser", "DEFAULT_IMPRESSIONS"]

DEFAULT_IMPRESSIONS = 3000
_MAX_SEED = (1 << 63) - 1
DEFAULT_SEED = 1
DEFAULT_WORKERS = 2
DEFAULT_MAX_LAG = 200
EXPERIENCE = "retail-main"
SIZE = "300x250"
DRAIN_TIMEOUT = 300.0

USER_AGENTS: dict[str, str] = {
    "mobile": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
              "Version/17.4 Mobile/15E148 Safari/604.1",
    "desktop": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
               "Chrome/124.0.0.0 Safari/537.36",
}

# Weather is an eligibility signal only (the campaign shows outerwear, boots, sweaters, snow gear, skis and
# heaters in cold weather); the click truth does not depend on it.
WEATHER_BY_REGION: dict[str, dict[str, float]] = {
    "pnw": {"cold": 0.35, "mild": 0.55, "hot": 0.10},
    "northeast": {"cold": 0.50, "mild": 0.40, "hot": 0.10},
    "southeast": {"cold": 0.05, "mild": 0.45, "hot": 0.50},
    "midwest": {"cold": 0.50, "mild": 0.35, "hot": 0.15},
    "southwest": {"cold": 0.05, "mild": 0.35, "hot": 0.60},
    "california": {"cold": 0.05, "mild": 0.65, "hot": 0.30},
}

_REGIONS = {"pnw": 0.12, "northeast": 0.2, "southeast": 0.22, "midwest": 0.18, "southwest": 0.12, "california": 0.16}
# region -> (its best image, its second image); none of them is restricted to cold weather, so each is eligible
# in every request of its region.
_REGIONAL_IMAGES = {
    "pnw": ("img06", "img12"),          # raincoats, hiking gear
    "northeast": ("img23", "img38"),    # cookware, home decor
    "southeast": ("img05", "img19"),    # swimwear, fans
    "midwest": ("img14", "img16"),      # grills, gardening
    "southwest": ("img32", "img15"),    # sunscreen, patio
    "california": ("img11", "img04"),   # activewear, sandals
}


def _demo_terms() -> list[dict[str, Any]]:
    terms: list[dict[str, Any]] = []
    for region, (best, second) in _REGIONAL_IMAGES.items():
        terms.append({"when": {"region": region, "image": best}, "logit": 1.6})
        terms.append({"when": {"region": region, "image": second}, "logit": 0.9})
    terms += [
        {"when": {"headline": "h07"}, "logit": 1.0},   # "Picked for your neighborhood"
        {"when": {"headline": "h03"}, "logit": 0.5},   # "Ready for the weather ahead?"
        {"when": {"headline": "h05"}, "logit": -0.3},
        {"when": {"cta": "c02"}, "logit": 0.8},        # "See the deals"
        {"when": {"device": "mobile", "cta": "c04"}, "logit": 0.5},  # "Get it today" on phones
        {"when": {"cta": "c05"}, "logit": -0.3},
    ]
    return terms


# The demo's audience, in the scenario format of `dco simulate` (examples/scenarios/*.json): six regions with a
# clear winning image each, one clearly better headline and call to action. Strong on purpose: the demo must
# show learning (a lift whose interval excludes zero) within the few thousand impressions a laptop serves in
# two minutes through the whole local stack. `dco simulate --scenario examples/scenarios/retail.json` is the
# realistic, subtler world.
DEMO_SCENARIO: dict[str, Any] = {
    "name": "demo",
    "description": "dco demo: regional image winners, one better headline and CTA (strong, for a short run)",
    "campaign": "examples/retail/campaign.yaml",
    "creative": "cr-retail",
    "experience": EXPERIENCE,
    "impressions": DEFAULT_IMPRESSIONS,
    "contexts": {"region": _REGIONS, "device": {"mobile": 0.6, "desktop": 0.4}},
    "slots": {
        "image": [f"img{i:02d}" for i in range(1, 41)],
        "headline": [f"h{i:02d}" for i in range(1, 13)],
        "cta": [f"c{i:02d}" for i in range(1, 7)],
    },
    "truth": {"base_logit": -3.2, "terms": _demo_terms()},
}


# ------------------------------------------------------------------------------------------------ audience


@dataclass(frozen=True)
class Visit:
    """One planned ad request: who asks, in which context, and the random numbers that decide its fate."""

    index: int
    context: int  # index into Audience.contexts
    region: str
    device: str
    weather: str
    uid: str
    seed: int  # the decision seed sent as ?seed= (replayable decisions)
    uniform: float  # click iff uniform < truth probability of what was served


class Audience:
    """The simulated audience: context mix and click truth of a scenario (:class:`dco_local.simulate.Truth`).

    >>> a = Audience(DEMO_SCENARIO)
    >>> ctx = a.context_index("pnw", "mobile")
    >>> a.click_probability(ctx, ["image=img06", "headline=h07", "cta=c02", "offer=o01"]) > 0.3
    True
    """

    def __init__(self, scenario: Mapping[str, Any] | Any) -> None:
        from dco_local.simulate import Scenario, Truth, scenario_from_dict

        self.scenario = scenario if isinstance(scenario, Scenario) else scenario_from_dict(scenario)
        self.truth = Truth(self.scenario)
        self.contexts = self.truth.contexts
        self.probs = self.truth.context_probs / self.truth.context_probs.sum()
        self._ctx_index = {(c.get("region"), c.get("device")): i for i, c in enumerate(self.contexts)}
        self._slot_pos = [{v: j for j, v in enumerate(vs)} for vs in self.truth.variants]
        shape = self.truth.shape
        self._radix = [math.prod(shape[i + 1:]) for i in range(len(shape))]
        self.base_p = 1.0 / (1.0 + math.exp(-self.scenario.base_logit))
        weather = self.scenario.raw.get("weather_by_region") or WEATHER_BY_REGION
        self.weather_by_region: dict[str, dict[str, float]] = {str(k): dict(v) for k, v in weather.items()}

    def context_index(self, region: str | None, device: str | None) -> int:
        return self._ctx_index[(region, device)]

    def combo_index(self, variants: Sequence[str]) -> int | None:
        """Index of the served combination in the truth tables (``slot=variant`` strings); None when it lacks a
        scenario slot or uses a variant the scenario does not know (slots outside the scenario are ignored)."""
        chosen = dict(v.split("=", 1) for v in variants if "=" in v)
        index = 0
        for slot, pos, radix in zip(self.truth.slot_names, self._slot_pos, self._radix, strict=True):
            j = pos.get(chosen.get(slot, ""))
            if j is None:
                return None
            index += j * radix
        return index

    def _phase(self, fraction: float) -> int:
        return self.truth.phase_at(fraction)

    def click_probability(self, context: int, variants: Sequence[str], fraction: float = 0.0) -> float:
        combo = self.combo_index(variants)
        if combo is None:
            return self.base_p
        return float(self.truth.tables[self._phase(fraction)][context, combo])

    def best_probability(self, context: int, fraction: float = 0.0) -> float:
        return float(self.truth.tables[self._phase(fraction)][context].max())

    def best_combination(self, region: str) -> tuple[list[str], float]:
        """The truly best combination of a region (device mix averaged) and its click probability."""
        table = self.truth.tables[0]
        rows = [i for i, c in enumerate(self.contexts) if c.get("region") == region]
        weights = self.probs[rows] / self.probs[rows].sum()
        mean = weights @ table[rows]
        j = int(mean.argmax())
        combo = self.truth.combos[j]
        return [f"{s}={v}" for s, v in zip(self.truth.slot_names, combo, strict=True)], float(mean[j])

    def oracle_ctr(self) -> float:
        return self.truth.oracle_ctr()

    def random_ctr(self) -> float:
        return self.truth.random_ctr()

    def plan(self, n: int, seed: int, viewers_per_context: int = 2000) -> list[Visit]:
        """``n`` visits drawn from the scenario's context mix; deterministic per ``seed``."""
        rng = np.random.default_rng(seed)
        ctx = rng.choice(len(self.contexts), size=n, p=self.probs).tolist()
        viewer = rng.integers(viewers_per_context, size=n).tolist()
        uniforms = rng.random(n).tolist()
        weather_u = rng.random(n).tolist()
        base = int.from_bytes(hashlib.blake2b(f"demo{seed}".encode(), digest_size=6).digest(), "big") << 16
        visits = []
        for i in range(n):
            c = self.contexts[ctx[i]]
            region = c.get("region") or ""
            device = c.get("device") or "desktop"
            visits.append(Visit(
                index=i, context=ctx[i], region=region, device=device,
                weather=_pick(self.weather_by_region.get(region, {"mild": 1.0}), weather_u[i]),
                uid=f"d{seed}-{ctx[i]}-{viewer[i]}", uniform=uniforms[i],
                seed=(base + i) & _MAX_SEED,  # decide takes seeds 0 .. 2**63-1 (a larger one is a 400)
            ))
        return visits


def _pick(dist: Mapping[str, float], u: float) -> str:
    total = 0.0
    for value, p in dist.items():
        total += p
        if u < total:
            return value
    return next(reversed(list(dist)))


# ------------------------------------------------------------------------------------------------ HTTP


class _Http:
    """One keep-alive connection to the gateway (one per worker thread); reconnects once on a broken socket."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.conn: http.client.HTTPConnection | None = None

    def get(self, target: str, user_agent: str) -> tuple[int, bytes]:
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
            try:
                self.conn.request("GET", target, headers={"User-Agent": user_agent, "Accept": "*/*"})
                response = self.conn.getresponse()
                return response.status, response.read()
            except (OSError, http.client.HTTPException):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def _target(url: str) -> str:
    """Path and query of a tracker URL: the gateway is reached at its loopback address whatever host it names."""
    parts = urlsplit(url)
    return parts.path + ("?" + parts.query if parts.query else "")


# ------------------------------------------------------------------------------------------------ the run


@dataclass
class _Log:
    """What the audience saw and did, one slot per visit (filled by the workers, in visit order)."""

    n: int

    def __post_init__(self) -> None:
        self.done = np.zeros(self.n, dtype=bool)
        self.served = np.zeros(self.n, dtype=bool)
        self.holdout = np.zeros(self.n, dtype=bool)
        self.clicked = np.zeros(self.n, dtype=bool)
        self.p_true = np.zeros(self.n)
        self.p_best = np.zeros(self.n)
        self.arm: list[str | None] = [None] * self.n
        self.region: list[str] = [""] * self.n
        self.variants: list[tuple[str, ...]] = [()] * self.n
        self.finished_at = np.zeros(self.n)


class _Shared:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.next = 0
        self.sent_impressions = 0
        self.sent_clicks = 0
        self.errors: Counter[str] = Counter()
        self.published = 0  # impressions in the newest published stats object
        self.stop = threading.Event()


def _play(visit: Visit, http_: _Http, ctx: dict[str, Any], log: _Log, shared: _Shared) -> None:
    from dco.errors import TokenError
    from dco.tracking import verify

    audience: Audience = ctx["audience"]
    ua = USER_AGENTS.get(visit.device, USER_AGENTS["desktop"])
    query = urlencode({
        "c": ctx["campaign"], "exp": EXPERIENCE, "size": SIZE, "fmt": "json", "country": "US",
        "region": visit.region, "weather": visit.weather, "uid": visit.uid, "seed": visit.seed,
    })
    status, body = http_.get(f"/v1/ad?{query}", ua)
    if status == 204:
        with shared.lock:
            shared.errors["no ad (204)"] += 1
        return
    if status != 200:
        with shared.lock:
            shared.errors[f"ad {status}"] += 1
        return
    ad = json.loads(body)
    trackers = [t for t in ad.get("impression_trackers") or [] if t]
    if not trackers:
        with shared.lock:
            shared.errors["ad without impression tracker"] += 1
        return
    token = (parse_qs(urlsplit(trackers[0]).query).get("t") or [""])[0]
    try:
        claims = verify(token, ctx["keys"], now=int(time.time()))
    except TokenError as exc:
        with shared.lock:
            shared.errors[f"token {exc.code}"] += 1
        return
    i = visit.index
    log.region[i] = visit.region
    log.served[i] = True
    log.holdout[i] = claims.holdout
    log.arm[i] = claims.arm
    log.variants[i] = tuple(claims.variants)
    fraction = i / max(1, log.n)
    log.p_true[i] = p = audience.click_probability(visit.context, claims.variants, fraction)
    log.p_best[i] = audience.best_probability(visit.context, fraction)
    for tracker in trackers:
        status, _ = http_.get(_target(tracker), ua)
        if status != 200:
            with shared.lock:
                shared.errors[f"impression {status}"] += 1
            return
    with shared.lock:
        shared.sent_impressions += 1
    if visit.uniform < p and ad.get("click_url"):
        status, _ = http_.get(_target(ad["click_url"]), ua)
        if status == 302:
            log.clicked[i] = True
            with shared.lock:
                shared.sent_clicks += 1
        else:
            with shared.lock:
                shared.errors[f"click {status}"] += 1


def _worker(visits: Sequence[Visit], base_url: str, ctx: dict[str, Any], log: _Log, shared: _Shared,
            max_lag: int) -> None:
    http_ = _Http(base_url)
    try:
        while not shared.stop.is_set():
            with shared.lock:
                if shared.next >= len(visits):
                    return
                visit = visits[shared.next]
                shared.next += 1
            while max_lag and visit.index - shared.published > max_lag and not shared.stop.is_set():
                time.sleep(0.05)  # pacing: wait for the pumps to publish what was already sent
            try:
                _play(visit, http_, ctx, log, shared)
            except (OSError, http.client.HTTPException, ValueError) as exc:
                with shared.lock:
                    shared.errors[f"{type(exc).__name__}"] += 1
            log.done[visit.index] = True
            log.finished_at[visit.index] = time.monotonic()
    finally:
        http_.close()


def _splits(obj: Mapping[str, Any] | None) -> dict[str, list[float]]:
    splits = (obj or {}).get("splits") or {}
    return {g: list(splits.get(g) or [0, 0, 0, 0.0]) for g in ("optimized", "holdout")}


def _monitor(stack: Any, campaign: str, shared: _Shared, every: float = 0.5) -> None:
    while not shared.stop.wait(every):
        with contextlib.suppress(Exception):  # a failed read only delays pacing; the final drain checks
            s = _splits(stack.stats(campaign))
            shared.published = int(s["optimized"][0] + s["holdout"][0])


@contextlib.contextmanager
def _quiet_handlers(verbose: bool) -> Iterator[None]:
    """Keep the handlers' structured logs and metrics (Powertools prints them to stdout) off the terminal."""
    if verbose:
        yield
        return
    loggers = [logging.getLogger(name) for name in ("dco_local", "botocore", "urllib3")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)


def run_demo(
    *,
    impressions: int = DEFAULT_IMPRESSIONS,
    seed: int = DEFAULT_SEED,
    report_dir: str | Path | None = None,
    workers: int = DEFAULT_WORKERS,
    scenario: Mapping[str, Any] | str | None = None,
    max_lag: int = DEFAULT_MAX_LAG,
    refresh_seconds: float = 1.0,
    progress: bool = True,
    verbose: bool = False,
) -> dict[str, Any]:
    """Run the demo and return its summary (the ``--json`` object); writes the report folder."""
    from dco_local.simulate import load_scenario
    from dco_local.stack import EXAMPLE_CAMPAIGN, EXAMPLE_FEED, LocalStack

    if impressions < 1:
        raise ValueError("impressions must be at least 1")
    if scenario is None:
        audience = Audience(DEMO_SCENARIO)
    elif isinstance(scenario, str):
        audience = Audience(load_scenario(scenario))
    else:
        audience = Audience(scenario)
    visits = audience.plan(impressions, seed)
    report_path = Path(report_dir) if report_dir else Path("reports") / f"demo-{seed}"
    log = _Log(impressions)
    shared = _Shared()
    timings: dict[str, float] = {}
    t_start = time.monotonic()
    with _quiet_handlers(verbose), LocalStack(refresh_seconds=refresh_seconds, quiet=not verbose) as stack:
        timings["stack_start"] = time.monotonic() - t_start
        campaign = stack.publish_example(EXAMPLE_CAMPAIGN, EXAMPLE_FEED)
        timings["publish"] = time.monotonic() - t_start - timings["stack_start"]
        ctx = {"audience": audience, "campaign": campaign, "keys": dict(stack.hmac_keys or {})}
        stack.start_pumps(interval=0.5)
        monitor = threading.Thread(target=_monitor, args=(stack, campaign, shared), daemon=True)
        monitor.start()
        threads = [
            threading.Thread(target=_worker, args=(visits, stack.base_url, ctx, log, shared, max_lag), daemon=True)
            for _ in range(max(1, workers))
        ]
        t_traffic = time.monotonic()
        for t in threads:
            t.start()
        try:
            _progress(threads, log, shared, impressions, progress)
        except KeyboardInterrupt:
            shared.stop.set()
            raise
        finally:
            for t in threads:
                t.join()
        timings["traffic"] = time.monotonic() - t_traffic
        shared.stop.set()
        monitor.join()
        t_drain = time.monotonic()
        stack.stop_pumps()
        obj = _drain(stack, campaign, shared)
        timings["drain"] = time.monotonic() - t_drain
        pump_failures = len(stack.failures)
    timings["total"] = time.monotonic() - t_start
    report_data = _stats_report(obj)
    summary = _summarize(obj, report_data, log, shared, audience, seed=seed, workers=workers, timings=timings,
                         report=report_path / "index.html", pump_failures=pump_failures)
    write_report(report_path, summary, obj, report_data, log, audience)
    return summary


def _stats_report(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The ``dco report`` of the published stats object, with the retail campaign's slot names and labels
    (``ValueError`` if the object does not validate)."""
    from dco_local.report import build_report, load_campaign

    return build_report(obj, campaign=load_campaign(_campaign_path()))


def _progress(threads: Sequence[threading.Thread], log: _Log, shared: _Shared, n: int, show: bool) -> None:
    bar = None
    if show:
        from tqdm import tqdm

        bar = tqdm(total=n, unit="imp", file=sys.stderr, dynamic_ncols=True, desc="dco demo", mininterval=1.0)
    shown = 0
    while any(t.is_alive() for t in threads):
        time.sleep(0.25)
        if bar is None:
            continue
        done = int(log.done.sum())
        bar.update(done - shown)
        shown = done
        opt = log.served & ~log.holdout & log.done
        hold = log.served & log.holdout & log.done
        ctr_o = log.clicked[opt].mean() if opt.any() else 0.0
        ctr_h = log.clicked[hold].mean() if hold.any() else 0.0
        bar.set_postfix_str(f"CTR optimized {ctr_o:.2%} holdout {ctr_h:.2%}, stats lag {max(0, done - shared.published)}")
    if bar is not None:
        bar.update(int(log.done.sum()) - shown)
        bar.close()


def _drain(stack: Any, campaign: str, shared: _Shared) -> dict[str, Any]:
    """Pump until the published splits hold every impression and click the audience sent (or time out)."""
    deadline = time.monotonic() + DRAIN_TIMEOUT
    obj: dict[str, Any] = {}
    while True:
        stack.pump()
        obj = stack.stats(campaign) or {}
        s = _splits(obj)
        counted = (s["optimized"][0] + s["holdout"][0], s["optimized"][1] + s["holdout"][1])
        if counted == (shared.sent_impressions, shared.sent_clicks) or time.monotonic() > deadline:
            return obj
        time.sleep(0.2)


# ------------------------------------------------------------------------------------------------ figures


CREATIVE = "cr-retail"  # examples/retail's assembled creative: the one whose components the demo reports


def _component_rows(report: Mapping[str, Any]) -> dict[tuple[str, str, str], dict[str, dict[str, Any]]]:
    """(creative, slot, context "all" | "region=pnw" ...) -> variant -> its row of the ``dco report`` of the stats
    (counts summed from the ``contexts`` counters, credible intervals, the model's effects)."""
    return {(c["creative"], c["slot"], c["context"]): {r["variant"]: r for r in c["variants"]}
            for c in report["components"]}


def _score(row: Mapping[str, Any]) -> float:
    """What ranks a variant: the click model's posterior mean effect there (logit: main effect, plus the
    interaction in a context) when a model was published, else the posterior mean CTR."""
    effect = row["effects"].get("click")
    return float(effect["mean"]) if effect else math.log(row["ctr_mean"])


def _ranked(rows: Mapping[str, Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The rows of a slot in one context, best first by :func:`_score` (ties by id)."""
    return sorted(rows.values(), key=lambda r: (-_score(r), r["variant"]))


def _summarize(obj: Mapping[str, Any], report_data: Mapping[str, Any], log: _Log, shared: _Shared,
               audience: Audience, *, seed: int, workers: int, timings: Mapping[str, float], report: Path,
               pump_failures: int) -> dict[str, Any]:
    """The summary (``--json``) from the published stats object ``obj``, its ``dco report`` (``report_data``)
    and what the audience sent and saw."""
    from dco_local.evaluate import ratio_lift

    s = _splits(obj)
    opt_n, opt_c = int(s["optimized"][0]), int(s["optimized"][1])
    hold_n, hold_c = int(s["holdout"][0]), int(s["holdout"][1])
    served = log.served & log.done
    sent = {
        "impressions": shared.sent_impressions,
        "clicks": shared.sent_clicks,
        "holdout_impressions": int((served & log.holdout).sum()),
        "holdout_clicks": int((log.clicked & log.holdout).sum()),
    }
    counted = {"impressions": opt_n + hold_n, "clicks": opt_c + hold_c,
               "holdout_impressions": hold_n, "holdout_clicks": hold_c}
    lift = ratio_lift(opt_c, opt_n, hold_c, hold_n)
    opt_mask, hold_mask = served & ~log.holdout, served & log.holdout
    from dco_local.report import ALL

    comps = _component_rows(report_data)

    best_by_region: dict[str, Any] = {}
    regions = sorted({c.get("region") for c in audience.contexts if c.get("region")}, key=str)
    tail = np.zeros(log.n, dtype=bool)
    tail[int(log.n * 0.8):] = True
    for region in regions:
        learned = []
        for slot in ("image", "headline", "cta", "offer"):
            rows = comps.get((CREATIVE, slot, f"region={region}"))
            if rows:
                learned.append(f"{slot}={_ranked(rows)[0]['variant']}")
        true_combo, true_p = audience.best_combination(region)
        in_tail = [i for i in np.nonzero(tail & opt_mask)[0] if log.region[i] == region]
        most = Counter(log.variants[i] for i in in_tail).most_common(1)
        best_by_region[region] = {
            "learned": learned,
            "learned_ctr": _region_truth(audience, region, learned),
            "true_best": true_combo,
            "true_best_ctr": true_p,
            "matches": {slot: (f"{slot}={dict(v.split('=', 1) for v in learned).get(slot)}" in true_combo)
                        for slot in audience.truth.slot_names},
            "served_most_last_20pct": list(most[0][0]) if most else [],
            "served_most_share": most[0][1] / len(in_tail) if most else None,
        }

    leaderboard: dict[str, list[dict[str, Any]]] = {}
    for (creative, slot, context), rows in comps.items():
        if creative != CREATIVE or context != ALL:
            continue
        leaderboard[slot] = [
            {"variant": r["variant"], "label": r["label"], "impressions": r["impressions"], "clicks": r["clicks"],
             "ctr": r["ctr"], "ctr_low": r["ctr_low"], "ctr_high": r["ctr_high"],
             "effect": {f: r["effects"]["click"][f] for f in ("mean", "low", "high")} if "click" in r["effects"]
             else None}
            for r in _ranked(rows)[:5]
        ]
    traffic = timings.get("traffic", 0.0) or 1e-9
    summary: dict[str, Any] = {
        "campaign": obj.get("campaign"),
        "seed": seed,
        "impressions": counted["impressions"],
        "clicks": counted["clicks"],
        "ctr": opt_c / opt_n if opt_n else None,
        "holdout_ctr": hold_c / hold_n if hold_n else None,
        "all_traffic_ctr": counted["clicks"] / counted["impressions"] if counted["impressions"] else None,
        "lift": None if lift is None else lift["lift"],
        "lift_ci": None if lift is None else [lift["ci_low"], lift["ci_high"]],
        "lift_method": "delta method on log(CTR optimized / CTR holdout), 95%",
        "optimized": {"impressions": opt_n, "clicks": opt_c},
        "holdout": {"impressions": hold_n, "clicks": hold_c},
        "counted": counted,
        "sent": sent,
        "counts_match": counted == sent,
        "expected": {
            "optimized_ctr": float(log.p_true[opt_mask].mean()) if opt_mask.any() else None,
            "holdout_ctr": float(log.p_true[hold_mask].mean()) if hold_mask.any() else None,
            "optimized_ctr_last_20pct": float(log.p_true[opt_mask & tail].mean()) if (opt_mask & tail).any() else None,
            "oracle_ctr": audience.oracle_ctr(),
            "random_ctr": audience.random_ctr(),
        },
        "best_by_region": best_by_region,
        "leaderboard": leaderboard,
        "errors": dict(shared.errors),
        "pump_failures": pump_failures,
        "workers": workers,
        "seconds": round(timings.get("total", 0.0), 1),
        "timings": {k2: round(v, 2) for k2, v in timings.items()},
        "impressions_per_second": round(float(log.done.sum()) / traffic, 1),
        "scenario": audience.scenario.name,
        "report": str(report),
    }
    return summary


def _region_truth(audience: Audience, region: str, variants: Sequence[str]) -> float | None:
    combo = audience.combo_index(variants)
    if combo is None:
        return None
    rows = [i for i, c in enumerate(audience.contexts) if c.get("region") == region]
    weights = audience.probs[rows] / audience.probs[rows].sum()
    return float(weights @ audience.truth.tables[0][rows, combo])


def _campaign_path() -> Path:
    from dco_local.stack import EXAMPLE_CAMPAIGN

    return Path(EXAMPLE_CAMPAIGN)


# ------------------------------------------------------------------------------------------------ report


def _windows(log: _Log, width: int) -> list[dict[str, Any]]:
    """Per window of ``width`` visits (in send order): realized and expected CTR of each group."""
    out = []
    for start in range(0, log.n, width):
        sl = slice(start, min(log.n, start + width))
        served = log.served[sl] & log.done[sl]
        row: dict[str, Any] = {"start": start, "end": sl.stop}
        for name, mask in (("optimized", served & ~log.holdout[sl]), ("holdout", served & log.holdout[sl])):
            n = int(mask.sum())
            row[name] = {
                "impressions": n,
                "clicks": int(log.clicked[sl][mask].sum()),
                "ctr": float(log.clicked[sl][mask].mean()) if n else None,
                "expected_ctr": float(log.p_true[sl][mask].mean()) if n else None,
            }
        out.append(row)
    return out


def _cumulative_lift(log: _Log, points: int = 40) -> list[dict[str, Any]]:
    from dco_local.evaluate import ratio_lift

    served = log.served & log.done
    opt = np.cumsum(served & ~log.holdout)
    hold = np.cumsum(served & log.holdout)
    opt_c = np.cumsum(log.clicked & ~log.holdout)
    hold_c = np.cumsum(log.clicked & log.holdout)
    exp_o = np.cumsum(np.where(served & ~log.holdout, log.p_true, 0.0))
    exp_h = np.cumsum(np.where(served & log.holdout, log.p_true, 0.0))
    out = []
    for end in sorted({max(1, int(log.n * (j + 1) / points)) for j in range(points)}):
        i = end - 1
        lift = ratio_lift(int(opt_c[i]), int(opt[i]), int(hold_c[i]), int(hold[i]))
        expected = (exp_o[i] / opt[i]) / (exp_h[i] / hold[i]) - 1.0 if opt[i] and hold[i] and exp_h[i] else None
        out.append({"impressions": end, "lift": None if lift is None else lift["lift"],
                    "ci_low": None if lift is None else lift["ci_low"],
                    "ci_high": None if lift is None else lift["ci_high"], "expected_lift": expected})
    return out


def _plots(summary: Mapping[str, Any], report_data: Mapping[str, Any], log: _Log,
           audience: Audience) -> list[tuple[str, str, str]]:
    """``[(title, caption, base64 PNG)]``: learning curve, lift over time, component effects by region."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dco_local.report import ALL, _png

    out = []
    width = max(100, log.n // 20)
    windows = _windows(log, width)
    x = [(w["start"] + w["end"]) / 2 for w in windows]

    def series(group: str, field: str) -> list[float]:
        return [np.nan if w[group][field] is None else w[group][field] for w in windows]

    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(x, series("optimized", "ctr"), "o-", color="#2a6fb0", label="optimized (clicks / impressions)")
    ax.plot(x, series("holdout", "ctr"), "s-", color="#999999", label="holdout (clicks / impressions)")
    ax.plot(x, series("optimized", "expected_ctr"), "--", color="#2a6fb0", alpha=0.6,
            label="optimized, true CTR of what was served")
    ax.plot(x, series("holdout", "expected_ctr"), "--", color="#999999", alpha=0.6,
            label="holdout, true CTR of what was served")
    ax.axhline(summary["expected"]["oracle_ctr"], color="#2e8b57", lw=1, ls=":", label="oracle (best per context)")
    ax.set_xlabel(f"impressions (windows of {width})")
    ax.set_ylabel("CTR")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title("Learning curve: optimized traffic vs the holdout group")
    out.append(("Learning curve", "CTR per window of impressions, in the order they were served. Markers are "
                "what the audience clicked; dashed lines the true click probability of the ads served (known "
                "here because the audience is simulated). The holdout gets uniformly random combinations, so "
                "its line stays flat; the optimized line climbs as stats are published and decide re-reads them.",
                _png(fig)))

    cum = _cumulative_lift(log)
    fig, ax = plt.subplots(figsize=(8, 3.6))
    xs = [c["impressions"] for c in cum if c["lift"] is not None]
    if xs:
        ax.fill_between(xs, [c["ci_low"] for c in cum if c["lift"] is not None],
                        [c["ci_high"] for c in cum if c["lift"] is not None], color="#2a6fb0", alpha=0.2,
                        label="95% interval (delta method)")
        ax.plot(xs, [c["lift"] for c in cum if c["lift"] is not None], color="#2a6fb0", label="lift so far")
    xe = [c["impressions"] for c in cum if c["expected_lift"] is not None]
    ax.plot(xe, [c["expected_lift"] for c in cum if c["expected_lift"] is not None], "--", color="#555",
            label="expected lift (true CTRs)")
    ax.axhline(0, color="black", lw=0.8)
    ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    ax.set_xlabel("impressions")
    ax.set_ylabel("lift over holdout")
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title("Lift over time (cumulative)")
    out.append(("Lift over time", "Cumulative lift of optimized traffic over the holdout after each share of the "
                "run, with its 95% interval. It includes the learning phase, so it trails the lift reached at "
                "the end; the interval narrows as clicks accumulate.", _png(fig)))

    comps = _component_rows(report_data)
    regions = sorted({c.get("region") for c in audience.contexts if c.get("region")}, key=str)
    for slot, limit in (("image", 14), ("headline", 12), ("cta", 6)):
        overall = comps.get((CREATIVE, slot, ALL))
        if not overall:
            continue
        names = sorted(sorted(overall, key=lambda v: (-overall[v]["impressions"], v))[:limit])
        modelled = all("click" in r["effects"] for r in overall.values())
        grid = np.full((len(names), len(regions)), np.nan)
        for j, region in enumerate(regions):
            rows = comps.get((CREATIVE, slot, f"region={region}")) or {}
            for i, v in enumerate(names):
                if v in rows:
                    grid[i, j] = _score(rows[v])
            if not modelled and np.isfinite(grid[:, j]).any():
                grid[:, j] -= np.nanmean(grid[:, j])
        fig, ax = plt.subplots(figsize=(1.1 * len(regions) + 2.5, 0.3 * len(names) + 1.6))
        bound = max(0.2, float(np.nanmax(np.abs(grid))) if np.isfinite(grid).any() else 0.2)
        im = ax.imshow(grid, aspect="auto", cmap="RdBu_r", vmin=-bound, vmax=bound)
        ax.set_xticks(range(len(regions)), regions, rotation=30)
        ax.set_yticks(range(len(names)), names, fontsize=8)
        for i in range(len(names)):
            for j in range(len(regions)):
                if np.isfinite(grid[i, j]) and abs(grid[i, j]) >= 0.5 * bound:
                    ax.text(j, i, f"{math.exp(grid[i, j]):.1f}x", ha="center", va="center", fontsize=6,
                            color="white" if abs(grid[i, j]) >= 0.75 * bound else "black")
        ax.set_title(f"{slot}: effect by region")
        if modelled:
            fig.colorbar(im, ax=ax, label="effect, logit (main + region interaction)")
            caption = (f"Each cell: what the published model says the {slot} variant does to the click odds in "
                       "that region: its main effect plus its region interaction (posterior mean, logit, the "
                       "memory of all evidence; strong cells give the odds ratio). Red = better, white = no "
                       "effect: the model shrinks to 0 what the data does not support, so a variant few viewers "
                       f"saw stays pale. The {limit} most-served variants are shown.")
        else:
            fig.colorbar(im, ax=ax, label="log(CTR / mean of the variants shown)")
            caption = (f"Each cell: the posterior mean CTR of the {slot} variant in that region relative to the "
                       f"variants shown there (log scale; no model was published). Red = better. The {limit} "
                       "most-served variants are shown.")
        out.append((f"Component effects by region: {slot}", caption, _png(fig)))
    return out


def write_report(folder: Path, summary: Mapping[str, Any], obj: Mapping[str, Any], report_data: Mapping[str, Any],
                 log: _Log, audience: Audience) -> Path:
    """index.html (summary, plots, tables), summary.json, stats.json and components.html (``report_data``, the
    ``dco report`` of ``obj``)."""
    from dco_local.report import render_html

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "stats.json").write_text(json.dumps(obj, sort_keys=True))
    (folder / "summary.json").write_text(json.dumps(summary, indent=1))
    (folder / "components.html").write_text(render_html(report_data))
    plots = _plots(summary, report_data, log, audience)
    (folder / "index.html").write_text(render_index(summary, plots))
    return folder / "index.html"


def _pct(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{digits}%}"


def _lift_text(summary: Mapping[str, Any]) -> str:
    if summary["lift"] is None:
        return "n/a (no clicks in a group)"
    lo, hi = summary["lift_ci"]
    return f"{summary['lift']:+.1%} (95% CI {lo:+.1%} .. {hi:+.1%})"


def render_index(summary: Mapping[str, Any], plots: Sequence[tuple[str, str, str]]) -> str:
    esc = html.escape
    s = summary
    opt, hold = s["optimized"], s["holdout"]
    parts = [
        "<!doctype html><html lang=en><head><meta charset='utf-8'><title>dco demo</title>",
        "<style>body{font:14px system-ui,sans-serif;margin:2em;max-width:1000px;color:#222}"
        "table{border-collapse:collapse;margin:.6em 0 1.4em}td,th{border:1px solid #ccc;padding:3px 8px;"
        "text-align:right}th{background:#f0f0f0}td.l,th.l{text-align:left}.ok{color:#2e7d32}.bad{color:#c62828}"
        "figure{margin:1.5em 0}figcaption{color:#555;max-width:800px}</style></head><body>",
        f"<h1>dco demo: {esc(str(s['campaign']))}, seed {s['seed']}</h1>",
        f"<p>A simulated audience ({esc(str(s['scenario']))} scenario) requested {s['impressions']:,} ads from "
        "the decide function of the local stack over HTTP, fired the impression and click beacons of the ads it "
        "got, and the pumps folded the outcomes into counters and published stats while it ran.</p>",
        "<h2>Summary</h2><table><tr><th class=l></th><th>impressions</th><th>clicks</th><th>CTR</th>"
        "<th>true CTR of what was served</th></tr>",
        f"<tr><td class=l>optimized</td><td>{opt['impressions']:,}</td><td>{opt['clicks']:,}</td>"
        f"<td>{_pct(s['ctr'])}</td><td>{_pct(s['expected']['optimized_ctr'])}</td></tr>",
        f"<tr><td class=l>holdout</td><td>{hold['impressions']:,}</td><td>{hold['clicks']:,}</td>"
        f"<td>{_pct(s['holdout_ctr'])}</td><td>{_pct(s['expected']['holdout_ctr'])}</td></tr></table>",
        f"<p><b>Lift of optimized over holdout: {esc(_lift_text(s))}</b>, {esc(s['lift_method'])}. "
        f"Optimized traffic in the last 20% of the run: true CTR {_pct(s['expected']['optimized_ctr_last_20pct'])}"
        f"; the best possible (oracle) is {_pct(s['expected']['oracle_ctr'])}, uniformly random "
        f"{_pct(s['expected']['random_ctr'])}.</p>",
        "<p>Counts come from the published stats object (splits written by publish-stats from the Counters "
        "table); they are checked against what the audience sent: ",
        f"<span class={'ok' if s['counts_match'] else 'bad'}>{'they match' if s['counts_match'] else 'MISMATCH'}"
        f"</span> (counted {esc(json.dumps(s['counted']))}; sent {esc(json.dumps(s['sent']))}).</p>",
        f"<p>{s['seconds']}s in all, {s['impressions_per_second']} impressions/s over HTTP with {s['workers']} "
        f"workers; timings {esc(json.dumps(s['timings']))}.</p>",
    ]
    for title, caption, png in plots:
        parts.append(f"<figure><h2>{esc(title)}</h2><img alt='{esc(title)}' src='data:image/png;base64,{png}'>"
                     f"<figcaption>{esc(caption)}</figcaption></figure>")
    parts.append("<h2>Best combination per region</h2><p>Learned: the best variant of each slot in the region by "
                 "the published model (the posterior mean of its effect there: main effect plus region "
                 "interaction; by CTR if no model was published). True best: from the simulated "
                 "audience's truth. Served most: the engine's most frequent optimized combination in the last 20% "
                 "of the run.</p><table><tr><th class=l>region</th><th class=l>learned</th><th>its true CTR</th>"
                 "<th class=l>true best</th><th>true CTR</th><th class=l>served most (share)</th></tr>")
    for region, b in s["best_by_region"].items():
        learned = " ".join(
            f"<span class={'ok' if b['matches'].get(v.split('=')[0]) else ''}>{esc(v)}</span>" for v in b["learned"]
        )
        share = "" if b["served_most_share"] is None else f" ({b['served_most_share']:.0%})"
        parts.append(
            f"<tr><td class=l>{esc(region)}</td><td class=l>{learned}</td><td>{_pct(b['learned_ctr'])}</td>"
            f"<td class=l>{esc(' '.join(b['true_best']))}</td><td>{_pct(b['true_best_ctr'])}</td>"
            f"<td class=l>{esc(' '.join(b['served_most_last_20pct']))}{share}</td></tr>"
        )
    parts.append("</table><h2>Component leaderboard (steered traffic)</h2><p>Per slot, the five variants with "
                 "the largest effect in the published model (main effect, logit, with its 95% interval), and "
                 "their counts summed from the context counters.</p>")
    for slot, rows in s["leaderboard"].items():
        parts.append(f"<h3>{esc(slot)}</h3><table><tr><th class=l>variant</th><th class=l>label</th>"
                     "<th>impressions</th><th>clicks</th><th>CTR</th><th>95% credible interval</th>"
                     "<th>effect (logit)</th><th>95% interval</th></tr>")
        for r in rows:
            e = r["effect"]
            effect = "<td></td><td></td>" if e is None else (
                f"<td>{e['mean']:+.2f}</td><td>{e['low']:+.2f} .. {e['high']:+.2f}</td>")
            parts.append(
                f"<tr><td class=l>{esc(r['variant'])}</td><td class=l>{esc(r['label'])}</td>"
                f"<td>{r['impressions']:,}</td><td>{r['clicks']:,}</td><td>{_pct(r['ctr'])}</td>"
                f"<td>{_pct(r['ctr_low'])} .. {_pct(r['ctr_high'])}</td>{effect}</tr>"
            )
        parts.append("</table>")
    parts.append("<p>Every component and combination with credible intervals: <a href='components.html'>"
                 "components.html</a> (the <code>dco report</code> of stats.json). Raw figures: "
                 "<a href='summary.json'>summary.json</a>, <a href='stats.json'>stats.json</a>.</p></body></html>")
    return "\n".join(parts)


# ------------------------------------------------------------------------------------------------ CLI


def print_summary(s: Mapping[str, Any], out: Any = sys.stdout) -> None:
    w = out.write
    opt, hold = s["optimized"], s["holdout"]
    w(f"\ndco demo: {s['campaign']}, seed {s['seed']}, {s['impressions']:,} impressions in {s['seconds']}s "
      f"({s['impressions_per_second']}/s over HTTP)\n\n")
    w(f"  {'':10s} {'impressions':>12s} {'clicks':>8s} {'CTR':>8s} {'true CTR served':>16s}\n")
    w(f"  {'optimized':10s} {opt['impressions']:>12,} {opt['clicks']:>8,} {_pct(s['ctr']):>8s} "
      f"{_pct(s['expected']['optimized_ctr']):>16s}\n")
    w(f"  {'holdout':10s} {hold['impressions']:>12,} {hold['clicks']:>8,} {_pct(s['holdout_ctr']):>8s} "
      f"{_pct(s['expected']['holdout_ctr']):>16s}\n\n")
    w(f"  lift {_lift_text(s)}\n")
    w(f"  optimized, last 20% of the run: true CTR {_pct(s['expected']['optimized_ctr_last_20pct'])} "
      f"(oracle {_pct(s['expected']['oracle_ctr'])}, random {_pct(s['expected']['random_ctr'])})\n")
    check = "match" if s["counts_match"] else "DO NOT MATCH"
    w(f"  counters vs sent: {check} (counted {s['counted']['impressions']:,} impressions / "
      f"{s['counted']['clicks']:,} clicks; sent {s['sent']['impressions']:,} / {s['sent']['clicks']:,})\n\n")
    w(f"  {'region':11s} {'learned best':34s} {'true CTR':>9s}   {'true best':34s} {'true CTR':>9s}\n")
    for region, b in s["best_by_region"].items():
        learned = " ".join(v.split("=")[1] + ("*" if b["matches"].get(v.split("=")[0]) else "") for v in b["learned"])
        true = " ".join(v.split("=")[1] for v in b["true_best"])
        w(f"  {region:11s} {learned:34s} {_pct(b['learned_ctr']):>9s}   {true:34s} {_pct(b['true_best_ctr']):>9s}\n")
    w("  (* = the learned variant is the true best of its slot)\n\n"
      "  component leaderboard (model effect in logit; CTR and impressions of steered traffic):\n")
    for slot, rows in s["leaderboard"].items():
        top = ", ".join(("" if r["effect"] is None else f"{r['effect']['mean']:+.2f} ")
                        + f"{r['variant']} {_pct(r['ctr'], 1)} ({r['impressions']:,})" for r in rows[:3])
        w(f"    {slot:9s} {top}\n")
    if s["errors"]:
        w(f"\n  errors: {s['errors']}\n")
    w(f"\n  report: {s['report']}\n")


def cmd_demo(args: argparse.Namespace) -> int:
    from dco_local.simulate import ScenarioError

    try:
        summary = run_demo(
            impressions=args.impressions, seed=args.seed, report_dir=args.report, workers=args.workers,
            scenario=args.scenario, max_lag=args.max_lag, refresh_seconds=args.refresh_seconds,
            progress=not args.json and not args.no_progress, verbose=args.verbose,
        )
    except (ScenarioError, ValueError) as exc:
        print(f"dco demo: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(summary))
    else:
        print_summary(summary)
    return 0 if summary["counts_match"] else 1


def add_parser(sub: Any) -> None:
    p = sub.add_parser("demo", help="the main job: the local stack, a simulated audience over HTTP, learning, a report")
    p.add_argument("--impressions", type=int, default=DEFAULT_IMPRESSIONS, help=f"ad requests (default {DEFAULT_IMPRESSIONS})")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="audience seed (contexts, viewers, clicks)")
    p.add_argument("--report", default=None, help="report folder (default reports/demo-<seed>)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object, no progress bar")
    p.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="concurrent HTTP clients")
    p.add_argument("--scenario", default=None, help="audience scenario (file or name in examples/scenarios); "
                   "default: the demo's built-in one")
    p.add_argument("--max-lag", type=int, default=DEFAULT_MAX_LAG,
                   help="most impressions the audience may run ahead of the published stats (0: no pacing)")
    p.add_argument("--refresh-seconds", type=float, default=1.0, help="how often decide re-reads the stats")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--verbose", action="store_true", help="let the handlers' logs and metrics through")
    p.set_defaults(func=cmd_demo)
