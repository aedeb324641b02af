"""The local stack's demo page (``GET /demo``): a publisher-like article with the JS ad tag in it.

The page embeds the ad the way a publisher would paste a tag: ``<script src="/v1/ad?...&fmt=js">``; the tag
inserts the ad as a sandboxed iframe next to itself. Query parameters of /demo choose the tag:

    c       campaign (retail-demo)          exp   experience (retail-main)      size  300x250
    region  geo region signal (pnw; empty: none)          other ad parameters (tag, t1, country, weather,
                                                         debug is not passed) go to the tag unchanged

Region buttons are plain links (no script on the page itself). The figures under the ad are read from the
published stats object when the page is served (reload to refresh after the pumps ran).
"""

from __future__ import annotations

import html
import secrets
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

DEFAULT_CAMPAIGN = "retail-demo"
DEFAULT_EXPERIENCE = "retail-main"
DEFAULT_SIZE = "300x250"
DEFAULT_REGION = "pnw"
REGIONS = ("pnw", "northeast", "southeast", "midwest", "southwest", "california")
_PAGE_PARAMS = ("c", "exp", "size", "region", "fmt", "debug", "cb")

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>The Daily Local: DCO demo</title>
<style>
body{{margin:0;font:16px/1.5 -apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,Arial,sans-serif;color:#1d1d1f;background:#fafafa}}
header{{background:#111;color:#fff;padding:.8em 1.5em}} header b{{font-size:1.3em}}
main{{display:flex;gap:2em;max-width:1000px;margin:1.5em auto;padding:0 1.5em;flex-wrap:wrap}}
article{{flex:1 1 420px}} aside{{flex:0 0 320px}}
.slot{{border:1px dashed #bbb;padding:9px;background:#fff;width:302px}}
.slot small{{display:block;color:#888;font-size:.7em;letter-spacing:.08em;text-transform:uppercase;margin-bottom:4px}}
nav a{{display:inline-block;margin:.15em .2em;padding:.25em .7em;border-radius:999px;background:#e4e4e7;color:#111;text-decoration:none;font-size:.85em}}
nav a.on{{background:#0b57d0;color:#fff}}
table{{border-collapse:collapse;font-size:.85em;margin-top:.6em}} td,th{{padding:.2em .6em;text-align:right}}
th:first-child,td:first-child{{text-align:left}} code{{font-size:.85em;word-break:break-all}}
</style>
</head>
<body>
<header><b>The Daily Local</b> &middot; a publisher page served by <code>dco serve</code></header>
<main>
<article>
<h1>Weekend weather and what to wear</h1>
<p>This page stands in for a publisher's article. The box on the right is an ad slot holding the DCO ad tag,
exactly as it would be pasted into a page or a DSP: a script that calls <code>GET /v1/ad</code> on the local
gateway, which runs the <em>decide</em> function against the published snapshot and stats.</p>
<p>Pick a region to change the geo signal the tag sends; each load is a new decision. Clicking the ad goes
through <code>/v1/events/click</code> (the <em>track</em> function) to the product page; the pumps fold the
impression and the click into the counters and publish the stats that the next decisions learn from.</p>
<nav id="regions">Region: {region_links}</nav>
<p>Tag on this page:<br><code id="tag-src">{tag_src_text}</code></p>
</article>
<aside>
<div class="slot" id="ad-slot"><small>Advertisement</small>
<script src="{tag_src}"></script>
</div>
<div id="stats">{stats_html}</div>
</aside>
</main>
</body>
</html>
"""


def tag_query(query: Mapping[str, str]) -> dict[str, str]:
    """The ad tag's query for a /demo request's query (defaults filled in, ``fmt=js``, a fresh cache buster)."""
    params = {
        "c": query.get("c") or DEFAULT_CAMPAIGN,
        "exp": query.get("exp") or DEFAULT_EXPERIENCE,
        "size": query.get("size") or DEFAULT_SIZE,
        "fmt": "js",
    }
    region = query.get("region", DEFAULT_REGION)
    if region and region != "none":
        params["region"] = region
    for name, value in query.items():
        if name not in _PAGE_PARAMS and value:
            params[name] = value
    params["cb"] = secrets.token_hex(6)
    return params


def render_demo_page(query: Mapping[str, str], stats: Mapping[str, Any] | None = None) -> str:
    """The demo page's HTML for a /demo request's query parameters."""
    params = tag_query(query)
    tag_src = "/v1/ad?" + urlencode(params)
    current = params.get("region", "none")
    links = []
    for region in (*REGIONS, "none"):
        link_query = {k: v for k, v in query.items() if k not in ("region", "cb")}
        link_query["region"] = region
        css = ' class="on"' if region == current else ""
        label = "no region" if region == "none" else region
        links.append(f'<a{css} href="/demo?{html.escape(urlencode(link_query))}" data-region="{region}">{label}</a>')
    return _PAGE.format(
        region_links=" ".join(links),
        tag_src=html.escape(tag_src),
        tag_src_text=html.escape(tag_src),
        stats_html=_stats_html(params["c"], stats),
    )


def _stats_html(campaign: str, stats: Mapping[str, Any] | None) -> str:
    if not stats:
        return f"<p><small>No stats published yet for {html.escape(campaign)}.</small></p>"
    rows = []
    splits = stats.get("splits") or {}
    for name in ("optimized", "holdout"):
        row = splits.get(name)
        if row:
            impressions, clicks = int(row[0]), int(row[1])
            ctr = f"{clicks / impressions:.1%}" if impressions else "-"
            rows.append(f"<tr><td>{name}</td><td>{impressions}</td><td>{clicks}</td><td>{ctr}</td></tr>")
    arms = stats.get("arms") or {}
    return (f"<table id='stats-table'><tr><th>{html.escape(campaign)}</th><th>impr.</th><th>clicks</th>"
            f"<th>CTR</th></tr>{''.join(rows)}</table><p><small>{len(arms)} arms with data; "
            f"reload to refresh.</small></p>")
