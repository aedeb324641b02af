"""The decision engine: one ad request in, one frozen Decision out, then rendered markup.

Data flow (see docs/engine.md)::

    AdRequest (dco.request) ──> Tier 1: snapshot.targeting.select()  -> AdTheme (or the default creative)
                            ──> AdTheme.group -> candidate creatives (size-compatible)
                            ──> per creative: arms
                                  standard / video : the creative
                                  dynamic          : product x creative pairs (dco.catalog top N)
                                  assembled        : the creative; its slot variants are chosen after it wins
                            ──> Tier 2: the group's rotation over the eligible arms (holdout: uniform)
                            ──> Decision (frozen; carries propensity, holdout flag, snapshot version, explain)
    Decision ──> landing_url() / ad_content() ──> dco.render (HTML, JS, JSON, VAST) with signed tracking URLs

Everything random comes from the ``seed`` passed in (one per decision, logged in the Decision), so a decision is
replayed exactly from (snapshot, stats, request, seed).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict, cast

from dco import bandit, learning
from dco._accel import np
from dco.campaign import Campaign, Creative, Variant
from dco.catalog import PickCache, ProductPick
from dco.errors import RequestError
from dco.render import AdContent, Rendered, Renderer, default_renderer, fill_placeholders, format_price
from dco.rng import make_rng
from dco.snapshot import Snapshot, TextColumn
from dco.stats import StatsTable
from dco.tracking import TokenClaims, TrackingUrls, sign, tracking_urls

_PRODUCT_FIELDS = ("id", "title", "description", "image_link", "price", "sale_price", "currency", "brand", "category")

ARM_SEP = "|"


def creative_arm(creative_id: str) -> str:
    return creative_id


def product_arm(creative_id: str, product_id: str) -> str:
    return f"{creative_id}{ARM_SEP}{product_id}"


def combination_arm(creative_id: str, variants: Sequence[tuple[str, str]]) -> str:
    return f"{creative_id}{ARM_SEP}" + ".".join(v for _, v in variants)


class _DecisionBase(TypedDict):
    """The fields of a :class:`Decision` known before anything is chosen."""

    decision_id: str
    campaign: str
    experience: str
    snapshot: str
    seed: int


@dataclass(frozen=True)
class Decision:
    """What was chosen for one request, and why. ``arm`` is the stats key the outcome is counted under."""

    decision_id: str
    campaign: str
    experience: str
    snapshot: str
    seed: int
    theme: str | None
    branch: str  # tree | else | tag | default | none
    creative: str | None
    creative_type: str | None
    product: str | None
    product_row: int | None
    variants: tuple[tuple[str, str], ...]
    arm: str | None
    propensity: float
    holdout: bool
    rotation: str
    explain: dict[str, Any] | None = field(default=None, compare=False)

    @property
    def served(self) -> bool:
        return self.creative is not None

    def to_dict(self) -> dict[str, Any]:
        out = {
            "decision_id": self.decision_id,
            "campaign": self.campaign,
            "experience": self.experience,
            "snapshot": self.snapshot,
            "seed": self.seed,
            "theme": self.theme,
            "branch": self.branch,
            "creative": self.creative,
            "creative_type": self.creative_type,
            "product": self.product,
            "variants": dict(self.variants),
            "arm": self.arm,
            "propensity": self.propensity,
            "holdout": self.holdout,
            "rotation": self.rotation,
        }
        if self.explain is not None:
            out["explain"] = self.explain
        return out


Assembly = Literal["model", "per-arm", "per-slot"]
ASSEMBLIES: tuple[Assembly, ...] = ("model", "per-arm", "per-slot")
_ARM_COUNTS_MAX = 1024  # arm sets whose counts a warm engine keeps (~20 KB each at 600 arms)


@dataclass
class _Segment:
    """The eligible arms of one creative: the creative itself (``rows`` None) or its top-N product rows."""

    creative: Creative
    rows: Sequence[int] | None
    size: int


def _locate(segments: list[_Segment], index: int) -> tuple[Creative, int | None]:
    for seg in segments:
        if index < seg.size:
            return seg.creative, None if seg.rows is None else seg.rows[index]
        index -= seg.size
    raise IndexError(index)


def _decision_id(campaign: str, seed: int, request_id: str | None) -> str:
    import hashlib

    material = f"{campaign}\x00{seed}\x00{request_id or ''}".encode()
    return hashlib.blake2b(material, digest_size=12).hexdigest()


def _size_ok(creative: Creative, size: str | None) -> bool:
    return size is None or creative.size is None or creative.size == size


class Engine:
    """Decisions over one loaded snapshot. Build once per snapshot (warm), call :meth:`decide` per request."""

    def __init__(
        self,
        snapshot: Snapshot,
        *,
        learning_params: learning.LearningParams = learning.DEFAULT_PARAMS,
        assembly: Assembly = "model",
        pick_cache: int = 4096,
    ) -> None:
        """``learning_params`` are the learner's (:mod:`dco.learning`); ``assembly`` is how Thompson sampling
        fills an assembled creative: ``model`` (the product: draws from the published model,
        :func:`dco.learning.choose`), or a reference learner the simulator compares with: ``per-arm`` (one Beta
        per full combination per learning context) or ``per-slot`` (one Beta per variant per slot per context);
        ``pick_cache`` bounds the product picks kept per (creative, request context) (0 turns it off)."""
        if assembly not in ASSEMBLIES:
            raise ValueError(f"assembly must be one of {', '.join(ASSEMBLIES)}, got {assembly!r}")
        self.snapshot = snapshot
        self.campaign: Campaign = snapshot.campaign
        self.picks = PickCache(snapshot, pick_cache)
        self.learning_params = learning_params
        self.assembly = assembly
        # the builder always stores "id" as a text column
        self._product_ids = cast("TextColumn | None", snapshot.columns.get("id"))
        self._arm_rows_cache: tuple[StatsTable, dict[str, Any]] | None = None
        # (stats, {arm set: (rows kept alive, successes, trials, (lower, upper))}): the counts of the arm sets
        # that cached picks produce, gathered once per stats object instead of once per decision.
        self._arm_counts: tuple[StatsTable | None, OrderedDict[Any, Any]] = (None, OrderedDict())
        self._id_to_row: dict[str, int] | None = None

    # ------------------------------------------------------------------------------------------- decide

    def decide(self, request: Any, stats: StatsTable, *, seed: int, explain: bool = False) -> Decision:
        """Choose the ad for ``request`` (a :class:`dco.request.AdRequest`)."""
        campaign = self.campaign
        experience = campaign.experience(request.experience)
        if experience is None:
            raise RequestError("exp", f'unknown experience "{request.experience}" in campaign "{campaign.id}"')
        if request.size is not None and experience.sizes and request.size not in experience.sizes:
            raise RequestError("size", f'{request.size} is not a size of experience "{experience.id}"')
        if request.format not in experience.formats:
            raise RequestError("fmt", f'format "{request.format}" is not enabled for experience "{experience.id}"')

        trace: dict[str, Any] | None = {} if explain else None
        signals = request.signals()
        result = self.snapshot.targeting.select(
            experience.id, signals, request.segments, request.now, tag=request.tag
        )
        if trace is not None:
            trace["targeting"] = None if result is None else {
                "theme": result.theme,
                "branch": result.branch,
                "score": result.score,
                "matched_rules": list(result.matched_rules),
                "candidates": result.candidates,
                "scores": [list(s) for s in result.scores],
            }
        holdout = campaign.holdout > 0 and bandit.in_holdout(request.holdout_key(), campaign.holdout, campaign.id)
        rng = make_rng(seed)
        base: _DecisionBase = {
            "decision_id": _decision_id(campaign.id, seed, request.request_id),
            "campaign": campaign.id,
            "experience": experience.id,
            "snapshot": self.snapshot.version,
            "seed": seed,
        }
        if result is None:
            return self._default(base, None, "default", holdout, trace)
        theme = campaign.themes[result.theme]
        group = campaign.groups[theme.group]
        wants_video = request.format == "vast"
        segments: list[_Segment] = []
        picks: dict[str, ProductPick] = {}
        filter_cache: dict[Any, Any] = {}
        for cid in group.creatives:
            creative = campaign.creatives[cid]
            if (creative.type == "video") != wants_video or not _size_ok(creative, request.size):
                continue
            if creative.type == "dynamic" and creative.products is not None:
                pick = self.picks.select(creative.id, creative.products, signals, filter_cache)
                picks[creative.id] = pick
                if len(pick):
                    segments.append(_Segment(creative, pick.rows, len(pick)))
            else:
                segments.append(_Segment(creative, None, 1))
        n_arms = sum(seg.size for seg in segments)
        if trace is not None:
            trace["group"] = group.id
            trace["rotation"] = group.rotation
            trace["products"] = {
                cid: {"candidates": p.candidates, "top_n": len(p.rows), "applied": list(p.applied)}
                for cid, p in picks.items()
            }
            trace["arms"] = n_arms
        if n_arms == 0:
            return self._default(base, result, "default", holdout, trace, theme=result.theme)

        rotation = "random" if holdout else group.rotation
        choice = self._rotate(rotation, segments, n_arms, group, stats, rng, request, trace)
        creative, product_row = _locate(segments, choice.index)
        propensity = choice.propensity
        variants: tuple[tuple[str, str], ...] = ()
        if product_row is None:
            arm_key = creative_arm(creative.id)
        else:
            arm_key = product_arm(creative.id, self._product_id(product_row))
        if creative.type == "assembled":
            if creative.products is not None:
                pick = self.picks.select(creative.id, creative.products, signals, filter_cache)
                product_row = pick.best()
                if trace is not None:
                    trace["products"][creative.id] = {
                        "candidates": pick.candidates, "top_n": len(pick.rows), "applied": list(pick.applied)
                    }
            chosen, slot_propensity = self._assemble(creative, signals, request, stats, rng, rotation, trace)
            if chosen is None:
                return self._default(base, result, "default", holdout, trace, theme=result.theme)
            variants = chosen
            propensity *= slot_propensity
            arm_key = combination_arm(creative.id, variants)
        return Decision(
            **base,
            theme=result.theme,
            branch=result.branch,
            creative=creative.id,
            creative_type=creative.type,
            product=None if product_row is None else self._product_id(product_row),
            product_row=product_row,
            variants=variants,
            arm=arm_key,
            propensity=propensity,
            holdout=holdout,
            rotation=rotation,
            explain=trace,
        )

    def _product_id(self, row: int) -> str:
        assert self._product_ids is not None
        return self._product_ids.get(row)

    def _default(
        self,
        base: _DecisionBase,
        result: Any,
        branch: str,
        holdout: bool,
        trace: dict[str, Any] | None,
        theme: str | None = None,
    ) -> Decision:
        cid = self.campaign.default_creative
        creative = self.campaign.creatives.get(cid) if cid else None
        if trace is not None:
            trace["default"] = cid
        return Decision(
            **base,
            theme=theme,
            branch=branch if creative is not None else "none",
            creative=None if creative is None else creative.id,
            creative_type=None if creative is None else creative.type,
            product=None,
            product_row=None,
            variants=(),
            arm=None if creative is None else creative_arm(creative.id),
            propensity=1.0,
            holdout=holdout,
            rotation="default",
            explain=trace,
        )

    def _rotate(
        self,
        rotation: str,
        segments: list[_Segment],
        n_arms: int,
        group: Any,
        stats: StatsTable,
        rng: Any,
        request: Any,
        trace: dict[str, Any] | None,
    ) -> bandit.Choice:
        if n_arms == 1 and trace is None:  # one eligible arm: every method picks it with certainty
            return bandit.Choice(0, 1.0, "thompson" if rotation == "algo" else rotation, (), True)
        if rotation == "algo":
            successes, trials, arm_bounds = self._counts(segments, stats)
            choice = bandit.thompson(
                successes, trials, rng, prior=self.campaign.prior, bounds=arm_bounds, top=1 if trace is None else 5
            )
        elif rotation == "random":
            choice = bandit.uniform(n_arms, rng)
        else:
            # weighted / sequential pick a creative; within it the best-scored product (rank 0) is shown.
            firsts: dict[str, int] = {}
            offset = 0
            for seg in segments:
                firsts.setdefault(seg.creative.id, offset)
                offset += seg.size
            present = [cid for cid in group.creatives if cid in firsts]
            if rotation == "weighted":
                weights = [group.weights.get(cid, 0.0) for cid in present]
                if sum(weights) <= 0:
                    weights = [1.0] * len(present)
                sub = bandit.weighted(weights, rng)
            else:
                position = bandit.sequence_position(request.holdout_key(), int(request.now.timestamp()), 3600)
                sub = bandit.sequential(len(present), position)
            choice = bandit.Choice(
                index=firsts[present[sub.index]],
                propensity=sub.propensity,
                method=rotation,
                sampled=(),
                skipped_sampling=True,
            )
        if trace is not None:
            trace["choice"] = {
                "method": choice.method,
                "arm": self._arm_key(segments, choice.index),
                "propensity": choice.propensity,
                "skipped_sampling": choice.skipped_sampling,
                "top_sampled": [[self._arm_key(segments, i), v] for i, v in choice.sampled],
            }
        return choice

    def _arm_key(self, segments: list[_Segment], index: int) -> str:
        creative, row = _locate(segments, index)
        return creative_arm(creative.id) if row is None else product_arm(creative.id, self._product_id(row))

    def _counts(self, segments: list[_Segment], stats: StatsTable) -> tuple[Any, Any, tuple[Any, Any]]:
        """``(successes, trials, (lower, upper))`` of the eligible arms, in arm order.

        Arm sets built from cached picks recur (one per request context), so with numpy and the pick cache on
        their gathered counts are kept per stats object (bounded LRU; a stats refresh starts a new one). The
        memo holds the picks' row arrays, so the ``id()`` in its key cannot be reused by another array.
        """
        objective, prior = self.campaign.objective, self.campaign.prior
        if np is None or not self.picks.maxsize:
            idx = self._stats_rows(segments, stats)
            return (*stats.counts_at(idx, objective), stats.bounds_at(idx, objective, prior))
        owner, memo = self._arm_counts
        if owner is not stats:
            memo = OrderedDict()
            self._arm_counts = (stats, memo)
        key = tuple(seg.creative.id if seg.rows is None else id(seg.rows) for seg in segments)
        found = memo.get(key)
        if found is not None:
            memo.move_to_end(key)
            return found[1], found[2], found[3]
        idx = self._stats_rows(segments, stats)
        successes, trials = stats.counts_at(idx, objective)
        found = ([seg.rows for seg in segments], successes, trials, stats.bounds_at(idx, objective, prior))
        for array in (successes, trials, *found[3]):
            array.flags.writeable = False  # shared by later decisions: nobody may change them
        memo[key] = found
        if len(memo) > _ARM_COUNTS_MAX:
            memo.popitem(last=False)
        return found[1], found[2], found[3]

    def _stats_rows(self, segments: list[_Segment], stats: StatsTable) -> Any:
        """Stats-table row numbers of every eligible arm, in arm order (one gather per dynamic creative)."""
        per_creative = self._arm_rows_for(stats)
        if np is not None:
            parts = []
            for seg in segments:
                if seg.rows is None:
                    parts.append(stats.indices([creative_arm(seg.creative.id)]))
                else:
                    table = per_creative.get(seg.creative.id)
                    rows = np.asarray(seg.rows, dtype=np.intp)
                    parts.append(table[rows] if table is not None else np.full(len(rows), len(stats), dtype=np.intp))
            return parts[0] if len(parts) == 1 else np.concatenate(parts)
        out: list[int] = []
        for seg in segments:
            if seg.rows is None:
                out.extend(stats.indices([creative_arm(seg.creative.id)]))
            else:
                table = per_creative.get(seg.creative.id)
                out.extend(table[r] for r in seg.rows) if table is not None else out.extend([len(stats)] * seg.size)
        return out

    def _arm_rows_for(self, stats: StatsTable) -> dict[str, Any]:
        """Per dynamic creative, product row -> stats row (the unknown row where the arm has no stats).

        Built once per stats object (a stats refresh), so a decision pays one array gather per creative instead
        of building and looking up a string key per product arm.
        """
        cached = self._arm_rows_cache
        if cached is not None and cached[0] is stats:
            return cached[1]
        unknown = len(stats)
        tables: dict[str, Any] = {}
        dynamic = {cid for cid, c in self.campaign.creatives.items() if c.type == "dynamic"}
        id_to_row = self._id_rows() if dynamic else {}
        for key, position in stats.items_with_separator(ARM_SEP):
            cid, _, pid = key.partition(ARM_SEP)
            if cid not in dynamic:
                continue
            row = id_to_row.get(pid)
            if row is None:
                continue
            table = tables.get(cid)
            if table is None:
                table = tables[cid] = (
                    np.full(self.snapshot.rows, unknown, dtype=np.intp) if np is not None else [unknown] * self.snapshot.rows
                )
            table[row] = position
        self._arm_rows_cache = (stats, tables)
        return tables

    def _assemble(
        self,
        creative: Creative,
        signals: Mapping[str, str],
        request: Any,
        stats: StatsTable,
        rng: Any,
        rotation: str,
        trace: dict[str, Any] | None,
    ) -> tuple[tuple[tuple[str, str], ...] | None, float]:
        """Choose one variant per slot among those its variant rules allow, no excluded pair together.

        ``algo``: one draw of the learner (:func:`dco.learning.choose`, or the reference learner of
        ``assembly``) over the whole combination, in the request's learning context. Otherwise (random, and the
        holdout): slots filled in config order, each variant uniformly among those the earlier picks do not
        exclude. The propensity is exact for both.
        """
        slots, excluded = _assembly(creative)
        now_local = None  # only variant rules need the local time
        eligible: list[Sequence[Variant]] = []
        for _slot, variants, ruleless, _slot_ids in slots:
            if ruleless:
                eligible.append(variants)
                continue
            from dco.targeting import rules_match

            if now_local is None:
                now_local = request.now.astimezone(_zone(self.campaign.timezone))
            allowed = [v for v in variants if v.rules is None or rules_match(v.rules, signals, request.segments, now_local)]
            if not allowed:
                return None, 0.0
            eligible.append(allowed)
        if rotation == "algo":
            ids = [_ids(e) for e in eligible]
            context = self.learning_context(request, signals)
            campaign = self.campaign
            if self.assembly == "model":
                result = learning.choose(
                    stats, creative.id, ids, creative.exclusions, context, campaign.objective, rng,
                    params=self.learning_params, explain=trace is not None,
                )
            elif self.assembly == "per-arm":
                result = learning.choose_per_arm(
                    stats, creative.id, ids, creative.exclusions, context, campaign.objective, rng,
                    prior=campaign.prior, params=self.learning_params,
                )
            else:
                result = learning.choose_per_slot(
                    stats, creative.id, ids, creative.exclusions, context, campaign.objective, rng,
                    prior=campaign.prior, params=self.learning_params,
                )
            if result.variants is None:
                return None, 0.0
            chosen = tuple((slot, vid) for (slot, *_rest), vid in zip(slots, result.variants, strict=True))
            if trace is not None:
                trace["slots"] = {
                    "method": self.assembly, "context": context, "chosen": dict(chosen),
                    "propensity": result.propensity, **(result.trace or {}),
                }
            return chosen, result.propensity
        picked: list[tuple[str, str]] = []
        picked_ids: list[str] = []
        propensity = 1.0
        for (slot, *_rest), options in zip(slots, eligible, strict=True):
            if excluded and picked_ids:
                blocked = set().union(*(excluded.get(v, set()) for v in picked_ids))
                options = [v for v in options if v.id not in blocked]
            if not options:
                return None, 0.0
            choice = bandit.uniform(len(options), rng)
            picked.append((slot, options[choice.index].id))
            picked_ids.append(options[choice.index].id)
            propensity *= choice.propensity
        if trace is not None:
            trace["slots"] = {"method": rotation, "chosen": dict(picked), "propensity": propensity}
        return tuple(picked), propensity

    def learning_context(self, request: Any, signals: Mapping[str, str] | None = None) -> dict[str, str]:
        """The request's values of the campaign's learning dimensions (:func:`dco.learning.learning_context`):
        what the learner conditions on, and what the tracking token carries for the fold to count in.
        ``signals``: ``request.signals()`` when the caller has them."""
        dims = self.campaign.learning.dimensions
        local = request.now.astimezone(_zone(self.campaign.timezone)) if "daypart" in dims else None
        return learning.learning_context(request.signals() if signals is None else signals, dims, local)

    # ------------------------------------------------------------------------------------------- content

    def claims(
        self, decision: Decision, issued_at: int, kid: str = "", context: Mapping[str, str] | None = None
    ) -> TokenClaims:
        """The tracking-token claims of a served decision (what beacons prove about it). ``context`` is the
        request's learning context (:meth:`learning_context`): the values the fold counts its outcomes in."""
        assert decision.creative is not None and decision.arm is not None
        return TokenClaims(
            campaign=decision.campaign,
            experience=decision.experience,
            arm=decision.arm,
            creative=decision.creative,
            product=decision.product,
            variants=tuple(f"{slot}={vid}" for slot, vid in decision.variants),
            snapshot=decision.snapshot,
            decision_id=decision.decision_id,
            issued_at=issued_at,
            holdout=decision.holdout,
            kid=kid,
            context=tuple(sorted((context or {}).items())),
        )

    def product_values(self, row: int) -> dict[str, str]:
        """Display values of a product for templates and offer placeholders (prices formatted)."""
        raw = self.snapshot.product(row, _PRODUCT_FIELDS)
        currency = str(raw.get("currency") or self.campaign.currency)
        out: dict[str, str] = {}
        for name, value in raw.items():
            if name in ("price", "sale_price"):
                if isinstance(value, float) and not math.isnan(value):
                    out[name] = format_price(value, currency)
            elif name == "image_link":
                out["image"] = str(value)
            elif name != "currency":
                out[name] = str(value)
        return out

    def ad_content(self, decision: Decision, urls: TrackingUrls, size: str | None) -> AdContent:
        """The renderer's input for a served decision: assets, variant content, product values, tracking URLs."""
        assert decision.creative is not None
        creative = self.campaign.creatives[decision.creative]
        fields: dict[str, str] = {}
        product = {} if decision.product_row is None else self.product_values(decision.product_row)
        if creative.type == "standard":
            fields.update(creative.assets)
            template = creative.template or "standard"
        elif creative.type == "dynamic":
            fields.update(product)
            fields.setdefault("headline", product.get("title", ""))
            template = creative.template or "product_card"
        elif creative.type == "assembled":
            by_id = {slot: {v.id: v for v in variants} for slot, variants in creative.slots.items()}
            for slot, vid in decision.variants:
                content = by_id[slot][vid].content
                if "text" in content:
                    fields[slot] = fill_placeholders(content["text"], product)
                elif "url" in content:
                    fields[slot] = content["url"]
                if slot == "image" and "alt" in content:
                    fields["image_alt"] = content["alt"]
            for name in ("price", "sale_price", "brand"):
                if name in product and name not in fields:
                    fields[name] = product[name]
            template = creative.template or "banner"
        else:  # video
            template = "video"
        return AdContent(
            creative_id=creative.id,
            creative_type=creative.type,
            template=template,
            size=size or creative.size,
            fields=fields,
            click_url=urls.click,
            impression_url=urls.impression,
            media=creative.media,
            duration=creative.duration,
            title=creative.name or product.get("title", ""),
            ad_id=decision.decision_id,
            conversion_ref=urls.conversion_ref,
        )

    def render(
        self,
        decision: Decision,
        request: Any,
        *,
        base_url: str,
        keys: Mapping[str, bytes],
        kid: str,
        renderer: Renderer | None = None,
    ) -> Rendered:
        """Sign the tracking token and render the decision in the request's format."""
        issued_at = int(request.now.timestamp())
        context = self.learning_context(request)
        token = sign(self.claims(decision, issued_at, kid, context), keys, kid)
        urls = tracking_urls(base_url, token, click_prefix=request.click_prefix, cache_buster=request.cache_buster)
        content = self.ad_content(decision, urls, request.size)
        return (renderer or default_renderer()).render(content, request.format)

    def landing_url(self, creative_id: str, product_id: str | None) -> str | None:
        """The landing URL held in the snapshot for a creative (and product): the only click target there is."""
        creative = self.campaign.creatives.get(creative_id)
        if creative is None:
            return None
        if product_id is not None and creative.products is not None:
            row = self._row_of(product_id)
            if row is not None and "link" in self.snapshot.columns:
                # only price and sale_price are stored numeric: "link" is a text or dict column, a str
                return cast(str, self.snapshot.columns["link"].get(row))
        return creative.landing_url

    def _id_rows(self) -> dict[str, int]:
        """Product id -> row, built on first use (clicks and stats mapping need it; decisions do not)."""
        if self._id_to_row is None:
            assert self._product_ids is not None
            get = self._product_ids.get
            self._id_to_row = {get(r): r for r in range(self.snapshot.rows)}
        return self._id_to_row

    def _row_of(self, product_id: str) -> int | None:
        return self._id_rows().get(product_id)


# Per-object caches that keep their keys alive (so an id is never reused while cached): bounded, emptied when
# full, so creatives of snapshots replaced long ago do not pile up in a warm process.
_OBJECT_CACHE_SIZE = 4096
_ASSEMBLY: dict[int, tuple[Creative, list[tuple[str, tuple[Variant, ...], bool, tuple[str, ...]]], dict[str, set[str]]]] = {}


def _assembly(
    creative: Creative,
) -> tuple[list[tuple[str, tuple[Variant, ...], bool, tuple[str, ...]]], dict[str, set[str]]]:
    """Per slot ``(name, variants, no variant has rules, variant ids)`` and the exclusions as variant -> the
    variants it excludes, cached per creative object (they live as long as the campaign)."""
    found = _ASSEMBLY.get(id(creative))
    if found is None or found[0] is not creative:
        excluded: dict[str, set[str]] = {}
        for a, b in creative.exclusions:
            excluded.setdefault(a, set()).add(b)
            excluded.setdefault(b, set()).add(a)
        slots = [(slot, variants, _ruleless(variants), _ids(variants)) for slot, variants in creative.slots.items()]
        if len(_ASSEMBLY) >= _OBJECT_CACHE_SIZE:
            _ASSEMBLY.clear()
        found = _ASSEMBLY[id(creative)] = (creative, slots, excluded)
    return found[1], found[2]


_SLOT_INFO: dict[int, tuple[tuple[Variant, ...], bool, tuple[str, ...]]] = {}


def _slot_info(variants: tuple[Variant, ...]) -> tuple[tuple[Variant, ...], bool, tuple[str, ...]]:
    found = _SLOT_INFO.get(id(variants))
    if found is None or found[0] is not variants:
        if len(_SLOT_INFO) >= _OBJECT_CACHE_SIZE:
            _SLOT_INFO.clear()
        found = _SLOT_INFO[id(variants)] = (variants, all(v.rules is None for v in variants), tuple(v.id for v in variants))
    return found


def _ruleless(variants: tuple[Variant, ...]) -> bool:
    """True when no variant of a slot has rules (cached per slot tuple: they live as long as the campaign)."""
    return _slot_info(variants)[1]


def _ids(variants: Sequence[Variant]) -> tuple[str, ...]:
    """Variant ids; for a whole slot tuple the cached tuple (the same object every time, cheap to compare)."""
    if isinstance(variants, tuple):
        return _slot_info(variants)[2]
    return tuple(v.id for v in variants)


_ZONES: dict[str, Any] = {}


def _zone(name: str) -> Any:
    zone = _ZONES.get(name)
    if zone is None:
        from zoneinfo import ZoneInfo

        zone = _ZONES[name] = ZoneInfo(name)
    return zone
