"""The local stack's lifecycle: state kept in a folder between runs, and ``dco invoke``.

These tests start their own stacks, so they live apart from the module-scoped ``retail_stack`` fixture (one
running stack per process).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tests.e2e.conftest import CAMPAIGN, Http, count_of, counters, tracking_urls

ROOT = Path(__file__).resolve().parents[2]
SMALL_FEED_ROWS = 60


def _small_feed() -> bytes:
    from dco_local.stack import EXAMPLE_FEED

    lines = EXAMPLE_FEED.read_text().splitlines()
    return ("\n".join(lines[: SMALL_FEED_ROWS + 1]) + "\n").encode()


def test_state_survives_a_restart(tmp_path: Path) -> None:
    from dco_local.stack import EXAMPLE_CAMPAIGN, LocalStack

    state = tmp_path / "state"
    http = Http()
    endpoint_before = os.environ.get("AWS_ENDPOINT_URL")
    # GIVEN a stack that published the example and counted one impression, stopped with a state folder
    with LocalStack(state_dir=state) as stack:
        stack.put_campaign(CAMPAIGN, EXAMPLE_CAMPAIGN)
        stack.put_feed(CAMPAIGN, _small_feed())
        pointer = stack.wait_published(CAMPAIGN)
        reply = http.get(f"{stack.base_url}/v1/ad?c={CAMPAIGN}&exp=retail-main&size=300x250&region=pnw&country=US")
        imp = tracking_urls(reply.text)["imp"].removeprefix(stack.base_url)
        assert http.get(stack.base_url + imp).status == 200
        stack.pump()
        saved = counters(stack)
        keys = dict(stack.hmac_keys or {})
    assert os.environ.get("AWS_ENDPOINT_URL") == endpoint_before  # the process environment is restored
    assert (state / "s3" / "pointers" / f"{CAMPAIGN}.json").is_file()
    assert (state / "keys.json").stat().st_mode & 0o077 == 0

    # WHEN a new stack starts from the folder
    with LocalStack(state_dir=state) as stack:
        # THEN the pointer, the counters and the keys are back, and nothing is re-ingested or re-folded
        assert stack.pointer(CAMPAIGN) == pointer
        assert stack.hmac_keys == keys
        pumped = stack.pump()
        assert pumped.invocations == 0
        assert counters(stack) == saved
        # AND a beacon of an ad served before the restart still verifies (same key) and counts once
        assert http.get(stack.base_url + imp).status == 200
        stack.pump()
        arm_keys = [k for k in saved if k.startswith("arm:")]
        assert all(count_of(counters(stack), k, "impressions") == count_of(saved, k, "impressions") for k in arm_keys)
        reply = http.get(f"{stack.base_url}/v1/ad?c={CAMPAIGN}&exp=retail-main&size=300x250&region=pnw")
        assert reply.status == 200


def test_dco_invoke_runs_a_sample_event(capsys: Any) -> None:
    from dco_local.cli import main

    code = main(["invoke", "decide", "--event", str(ROOT / "events" / "decide" / "ad_request.json"),
                 "--campaign", str(ROOT / "examples" / "retail" / "campaign.yaml"),
                 "--feed", str(ROOT / "examples" / "retail" / "feed.tsv")])
    out = capsys.readouterr().out
    assert code == 0
    response = json.loads(out)
    assert response["statusCode"] == 200
    assert response["headers"]["Content-Type"].startswith("text/html")
    assert "/v1/events/imp?t=" in response["body"]
