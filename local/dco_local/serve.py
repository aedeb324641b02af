"""``dco serve`` and ``dco invoke``: the local stack from the command line.

    dco serve [--campaign FILE --feed FILE] [--port N] [--state DIR] [--verbose]
        start the stack, drop the campaign and feed (the retail example by default), wait for publication,
        pump in the background, print the URLs, serve until Ctrl-C (then pumps, gateway and moto stop, and the
        state is exported when --state is given)

    dco invoke FUNCTION --event FILE [--campaign FILE --feed FILE | --bare] [--state DIR]
        start the stack (the example published unless --bare), run one handler with the event, pump what it
        caused, print its response as JSON: ``sam local invoke`` without Docker

FUNCTION is a directory name under functions/ (decide, track, fold, publish_stats, ingest) or a template logical
id (DecideFunction). Sample events are under events/<function>/. Their bucket and table names are the sample
ones, so ``invoke`` rewrites an S3 event's bucket to the local stack's bucket (a notice says so).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from dco_local.stack import EXAMPLE_CAMPAIGN, EXAMPLE_FEED, LocalStack, LocalStackError


def add_parser(sub: Any) -> None:
    """Add ``serve`` and ``invoke`` to the ``dco`` command's subparsers."""
    serve = sub.add_parser("serve", help="run the local stack (moto + gateway + pumps) with the demo page")
    _stack_options(serve)
    serve.add_argument("--port", type=int, default=8080, help="gateway port (0: any free port; default 8080)")
    serve.add_argument("--refresh", type=float, default=1.0, help="DCO_REFRESH_SECONDS of decide and track")
    serve.add_argument("--interval", type=float, default=0.5, help="seconds between pump rounds")
    serve.set_defaults(func=cmd_serve)

    invoke = sub.add_parser("invoke", help="run one function against the local stack with a sample event")
    invoke.add_argument("function", help="decide, track, fold, publish_stats, ingest (or a logical id)")
    invoke.add_argument("--event", "-e", required=True, help="event JSON file (events/<function>/*.json), - = stdin")
    _stack_options(invoke)
    invoke.add_argument("--bare", action="store_true", help="publish nothing first (an empty stack)")
    invoke.add_argument("--no-pump", action="store_true", help="do not run the pumps after the invocation")
    invoke.set_defaults(func=cmd_invoke)


def _stack_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--campaign", help=f"campaign config to publish (default: {_rel(EXAMPLE_CAMPAIGN)})")
    parser.add_argument("--feed", help=f"product feed (default with the default campaign: {_rel(EXAMPLE_FEED)})")
    parser.add_argument("--state", help="keep S3 objects, table items and keys in this folder between runs")
    parser.add_argument("--verbose", "-v", action="store_true", help="access logs, function logs, metrics")


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _publish(stack: LocalStack, args: argparse.Namespace) -> str | None:
    if args.feed and not args.campaign:
        raise SystemExit("dco: --feed needs --campaign (the default campaign comes with its own feed)")
    try:
        return stack.publish_example(args.campaign, args.feed)
    except (LocalStackError, OSError) as exc:
        raise SystemExit(f"dco: {exc}") from None


def cmd_serve(args: argparse.Namespace) -> int:
    stop = threading.Event()
    # Ctrl-C and SIGTERM both end the serve loop (SIGINT explicitly: a shell may start background jobs with it
    # ignored).
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    started = time.monotonic()
    try:
        stack = LocalStack(port=args.port, state_dir=args.state, refresh_seconds=args.refresh, quiet=not args.verbose)
        try:
            stack.start()
        except OSError as exc:
            raise SystemExit(f"dco: cannot start the gateway on port {args.port}: {exc.strerror} "
                             "(try --port 0 for any free port)") from None
        try:
            print(f"dco serve: stack up in {time.monotonic() - started:.1f}s; publishing...", flush=True)
            campaign = _publish(stack, args)
            stack.start_pumps(args.interval)
            _print_urls(stack, campaign, args)
            while not stop.is_set():
                stop.wait(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            print("\ndco serve: stopping (pumps, gateway, moto)...", flush=True)
            stack.stop()
            if args.state:
                print(f"dco serve: state saved in {args.state}")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _print_urls(stack: LocalStack, campaign: str | None, args: argparse.Namespace) -> None:
    base = stack.base_url
    ad = {"c": campaign or "", "exp": "retail-main", "size": "300x250", "region": "pnw"} \
        if campaign == "retail-demo" else {"c": campaign or "", "exp": "<experience>"}
    lines = [
        f"  demo page     {base}/demo",
        f"  ad (html)     {base}/v1/ad?{urlencode(ad)}",
        f"  explain       {base}/v1/ad?{urlencode({**ad, 'debug': '1'})}",
        f"  health        {base}/healthz",
        f"  moto          {stack.moto_url}   (bucket {stack.bucket}; tables {stack.events_table}, "
        f"{stack.counters_table})",
        f"  aws cli       AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing aws --endpoint-url "
        f"{stack.moto_url} --region {stack.region} s3 ls s3://{stack.bucket}/ --recursive",
    ]
    print(f"dco serve: campaign {campaign} published; pumps every {args.interval:g}s. Ctrl-C stops.")
    print("\n".join(lines), flush=True)


def _load_event(path: str) -> dict[str, Any]:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as exc:
        raise SystemExit(f"dco: cannot read {path}: {exc.strerror}") from None
    try:
        event = json.loads(text)
    except ValueError as exc:
        raise SystemExit(f"dco: {path} is not JSON: {exc}") from None
    if not isinstance(event, dict):
        raise SystemExit(f"dco: {path} must hold a JSON object")
    return event


def _localise(event: dict[str, Any], stack: LocalStack) -> dict[str, Any]:
    """Point an S3 sample event at the stack's bucket (sample events name a test bucket)."""
    for record in event.get("Records") or []:
        bucket = (record.get("s3") or {}).get("bucket")
        if isinstance(bucket, dict) and bucket.get("name") not in (None, stack.bucket):
            print(f"dco invoke: S3 record bucket {bucket.get('name')} -> {stack.bucket}", file=sys.stderr)
            bucket["name"], bucket["arn"] = stack.bucket, f"arn:aws:s3:::{stack.bucket}"
    return event


def cmd_invoke(args: argparse.Namespace) -> int:
    event = _load_event(args.event)
    with LocalStack(state_dir=args.state, quiet=not args.verbose) as stack:
        try:
            stack.function(args.function)
        except LocalStackError as exc:
            raise SystemExit(f"dco: {exc}") from None
        if not args.bare:
            _publish(stack, args)
        try:
            response = stack.invoke(args.function, _localise(event, stack))
        except Exception as exc:  # noqa: BLE001 - report like Lambda: an error object, exit 1
            print(json.dumps({"errorType": type(exc).__name__, "errorMessage": str(exc)}, indent=2))
            return 1
        if not args.no_pump:
            stats = stack.pump()
            if stats.invocations:
                print(f"dco invoke: pumps delivered {stats.delivered} records in {stats.invocations} invocations",
                      file=sys.stderr)
        print(json.dumps(response, indent=2, sort_keys=True))
    return 0
