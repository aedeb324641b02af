"""Fixtures of the end-to-end tests: the local stack (dco_local.stack) driven over real HTTP.

``retail_stack`` starts one :class:`~dco_local.stack.LocalStack` per test module with the retail example
published (campaign + 3,000-product feed dropped into S3, built and published by ingest through the S3
notification pump). Only one stack can run per process (the handlers read the process environment), so the
fixture is module-scoped: a test that starts its own stack must live in a module that does not use it.

``http`` is a tiny urllib client that never follows redirects and never raises on 4xx/5xx, sending a desktop
browser User-Agent (HTTP libraries are bots to ``dco.bots``, and bots are answered but not counted).
"""

from __future__ import annotations

import html
import json
import re
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CAMPAIGN = "retail-demo"
DESKTOP_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
)
_TRACKING_URL = re.compile(r'(?:href|src)="(https?://[^"]+/v1/events/(imp|click)\?[^"]+)"')


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    def json(self) -> Any:
        return json.loads(self.body)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@dataclass
class Http:
    """GET/POST over real HTTP; redirects are returned, not followed."""

    user_agent: str = DESKTOP_UA
    opener: Any = field(default_factory=lambda: urllib.request.build_opener(_NoRedirect))

    def request(self, method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> Reply:
        request = urllib.request.Request(url, data=body, method=method,
                                         headers={"User-Agent": self.user_agent, **(headers or {})})
        try:
            with self.opener.open(request, timeout=30) as response:
                return Reply(response.status, dict(response.headers.items()), response.read())
        except urllib.error.HTTPError as exc:
            return Reply(exc.code, dict(exc.headers.items()), exc.read())

    def get(self, url: str, **headers: str) -> Reply:
        return self.request("GET", url, headers=headers)


def tracking_urls(markup: str) -> dict[str, str]:
    """``{"imp": url, "click": url}`` from rendered ad markup (attribute values HTML-unescaped)."""
    return {kind: html.unescape(url) for url, kind in _TRACKING_URL.findall(markup)}


def counters(stack: Any, campaign: str = CAMPAIGN) -> dict[str, dict[str, Any]]:
    """Counter key (``arm:...``) -> item of the Counters table, scanned through boto3 on moto."""
    from boto3.dynamodb.types import TypeDeserializer

    deserializer = TypeDeserializer()
    out: dict[str, dict[str, Any]] = {}
    paginator = stack.client("dynamodb").get_paginator("scan")
    for page in paginator.paginate(TableName=stack.counters_table):
        for raw in page.get("Items") or []:
            item = {k: deserializer.deserialize(v) for k, v in raw.items()}
            prefix = f"{campaign}#"
            if item["pk"].startswith(prefix):
                out[item["pk"][len(prefix):]] = item
    return out


def count_of(items: dict[str, dict[str, Any]], key: str, field_name: str) -> int:
    return int(items.get(key, {}).get(field_name, 0))


@pytest.fixture(scope="module")
def retail_stack() -> Iterator[Any]:
    """A running local stack with the retail example published (one per test module)."""
    from dco_local.stack import EXAMPLE_CAMPAIGN, EXAMPLE_FEED, LocalStack

    with LocalStack(refresh_seconds=1.0) as stack:
        stack.put_campaign(CAMPAIGN, EXAMPLE_CAMPAIGN)
        stack.put_feed(CAMPAIGN, EXAMPLE_FEED)
        stack.wait_published(CAMPAIGN, timeout=120)
        yield stack


@pytest.fixture
def http() -> Http:
    return Http()
