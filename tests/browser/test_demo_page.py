"""The ad tag in a real browser: headless Chromium loads the local stack's /demo page, the JS tag renders the
ad (the product title shown as text, escaped, with no injected script run), a trusted click opens the product
page through the click beacon, and after the pumps run the impression and the click are counted.

Runtime: Debian's ``chromium`` (``.ci/setup-browser``), driven over the DevTools protocol (tests/browser/cdp.py).
Outside CI a missing Chromium skips this module with the reason; under ``CI=true`` it fails.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from tests.browser.cdp import Browser, Page, find_chromium, walk

CAMPAIGN = "retail-demo"
# A normal desktop browser: Chromium's own headless agent says "HeadlessChrome", which dco.bots flags as a bot
# (answered, never counted).
DESKTOP_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
)
TITLE = '<b>"Bold" & co</b><img src=x onerror="window.__pwned=1"><script>window.__pwned=1</script>'
HEADER = ("id\ttitle\tdescription\tlink\timage_link\tadditional_image_link\tavailability\tprice\tsale_price\tbrand\t"
          "product_type\tcustom_label_0\tcustom_label_1\tshipping_country\tpopularity")


@pytest.fixture(scope="module")
def chromium() -> str:
    binary = find_chromium()
    if binary is None:
        reason = "chromium not found (run .ci/setup-browser, or set DCO_CHROMIUM to a Chromium binary)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and the browser runtime is missing: {reason}")
        print(f"\nSKIP tests/browser: {reason}")
        pytest.skip(reason)
    return binary


def _feed(base_url: str) -> bytes:
    """Three products whose titles carry markup, linking to the local stack's stand-in product pages."""
    rows = [HEADER]
    for i in range(1, 4):
        sku = f"SKU-B{i:03d}"
        rows.append("\t".join([
            sku, TITLE, "A product whose title tries to inject markup.", f"{base_url}/landing/{sku.lower()}",
            f"{base_url}/landing/{sku.lower()}.png", "", "in_stock", f"{10 * i}.00 USD", "", "Northwind",
            "cookware", "pnw", "all-season", "US", "0.5",
        ]))
    return ("\n".join(rows) + "\n").encode()


@pytest.fixture(scope="module")
def stack(chromium: str) -> Iterator[Any]:
    from dco_local.stack import EXAMPLE_CAMPAIGN, LocalStack

    with LocalStack(refresh_seconds=1.0) as running:
        running.put_campaign(CAMPAIGN, EXAMPLE_CAMPAIGN)
        running.put_feed(CAMPAIGN, _feed(running.base_url))
        running.wait_published(CAMPAIGN, timeout=120)
        yield running


def _counters(stack: Any) -> dict[str, dict[str, Any]]:
    from boto3.dynamodb.types import TypeDeserializer

    deserializer = TypeDeserializer()
    items = stack.client("dynamodb").scan(TableName=stack.counters_table)["Items"]
    out = {}
    for raw in items:
        item = {k: deserializer.deserialize(v) for k, v in raw.items()}
        out[item["pk"].split("#", 1)[1]] = item
    return out


def _ad_document(browser: Browser, page: Page) -> dict[str, Any]:
    """The ad iframe's document: in the page's DOM when the frame shares its process, else (site isolation:
    the sandboxed srcdoc frame has an opaque origin) from the frame's own DevTools target."""
    deadline = time.monotonic() + 15
    while True:
        for node in walk(page.document()):
            attributes = node.get("attributes") or []
            if node.get("nodeName") == "IFRAME" and "data-dco-ad" in attributes[::2]:
                if node.get("contentDocument"):
                    return node["contentDocument"]
                frame = browser.frame(node.get("frameId"))
                try:
                    frame.send("DOM.enable")
                    document = frame.document()
                finally:
                    frame.close()
                if any(n.get("nodeName") == "BODY" and n.get("children") for n in walk(document)):
                    return document
        if time.monotonic() > deadline:
            raise AssertionError("the ad iframe's document did not render")
        time.sleep(0.2)


def _wait_for_target(browser: Browser, prefix: str, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for target in browser.targets():
            if target.get("type") == "page" and target.get("url", "").startswith(prefix):
                return target
        time.sleep(0.1)
    urls = [t.get("url") for t in browser.targets()]
    raise AssertionError(f"no tab reached {prefix} within {timeout}s (tabs: {urls})")


def test_demo_page_renders_escaped_ad_and_counts_the_click(stack: Any, chromium: str) -> None:
    query = {"exp": "retail-tag", "tag": "3", "country": "US", "region": "pnw"}
    with Browser.launch(user_agent=DESKTOP_UA, binary=chromium) as browser:
        page = browser.page()
        page.send("Runtime.enable")
        page.send("DOM.enable")

        # GIVEN the publisher page with the JS ad tag
        page.navigate(f"{stack.base_url}/demo?{urlencode(query)}")
        page.wait_for("!!document.querySelector('iframe[data-dco-ad]')")
        assert page.evaluate("navigator.userAgent") == DESKTOP_UA

        # THEN the ad renders the product title as text: escaped, nothing injected, nothing run
        document = _ad_document(browser, page)
        texts = [n.get("nodeValue", "") for n in walk(document) if n.get("nodeType") == 3]
        assert any(TITLE in text for text in texts), texts
        element_names = {n.get("nodeName") for n in walk(document) if n.get("nodeType") == 1}
        assert "SCRIPT" not in element_names and "B" not in element_names
        injected = [n for n in walk(document) if n.get("nodeName") == "IMG"
                    and "onerror" in (n.get("attributes") or [])[::2]]
        assert injected == []
        assert page.evaluate("typeof window.__pwned") == "undefined"
        sandbox = page.evaluate("document.querySelector('iframe[data-dco-ad]').getAttribute('sandbox')")
        assert "allow-scripts" not in sandbox

        # AND the impression pixel reached track (counted once the pumps run)
        links = [dict(zip(n["attributes"][::2], n["attributes"][1::2], strict=True))
                 for n in walk(document) if n.get("nodeName") == "A"]
        click_url = links[0]["href"]
        assert click_url.startswith(f"{stack.base_url}/v1/events/click?t=")

        # WHEN the viewer clicks the ad (a trusted click in the middle of the iframe)
        page.evaluate("document.querySelector('iframe[data-dco-ad]').scrollIntoView({block: 'center'})")
        box = page.evaluate(
            "(() => { const r = document.querySelector('iframe[data-dco-ad]').getBoundingClientRect();"
            " return {x: r.left + r.width / 2, y: r.top + r.height / 2, w: r.width, h: r.height}; })()")
        assert box["w"] > 0 and box["h"] > 0
        page.click_at(box["x"], box["y"])

        # THEN a new tab lands on the product page (through the click beacon's 302)
        landing = _wait_for_target(browser, f"{stack.base_url}/landing/")
        assert urlsplit(landing["url"]).path.startswith("/landing/sku-b00")
        page.close()

    # AND after the pumps run, the impression and the click are counted for the arm that was shown
    from dco.tracking import verify

    token = parse_qs(urlsplit(click_url).query)["t"][0]
    claims = verify(token, stack.hmac_keys, now=int(time.time()))
    deadline = time.monotonic() + 15
    while True:
        stack.pump()
        arm = _counters(stack).get(f"arm:{claims.arm}", {})
        if int(arm.get("clicks", 0)) >= 1 and int(arm.get("impressions", 0)) >= 1 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert (int(arm.get("impressions", 0)), int(arm.get("clicks", 0))) == (1, 1)
    stats = stack.stats(CAMPAIGN)
    assert stats is not None and stats["arms"][claims.arm][:2] == [1, 1]
