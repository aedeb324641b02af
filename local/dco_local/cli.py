"""The ``dco`` command line: feeds, snapshots, decisions, benchmarks (and, as they land, the local stack).

Every subcommand is a thin shell over the runtime package; exit codes: 0 success, 1 a negative verdict (feed not
publishable), 2 bad usage or input the command could not read.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _read_bytes(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise SystemExit(f"dco: cannot read {path}: {exc.strerror}") from None


def _load_campaign_file(path: str) -> tuple[dict[str, Any], Any]:
    from dco.config import campaign_from_dict, parse_config_text
    from dco.errors import ConfigError

    try:
        data = parse_config_text(_read_bytes(path))
        return data, campaign_from_dict(data)
    except ConfigError as exc:
        raise SystemExit(f"dco: {path}: {exc}") from None


# ------------------------------------------------------------------------------------------------------ feed


def cmd_feed_validate(args: argparse.Namespace) -> int:
    from dco.campaign import FeedSpec
    from dco.feed import parse_feed

    spec, currency = FeedSpec(), "USD"
    if args.config:
        _, campaign = _load_campaign_file(args.config)
        spec, currency = campaign.feed, campaign.currency
    result = parse_feed(_read_bytes(args.file), spec, currency=currency)
    report = result.report
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        verdict = "publishable" if report.publishable else "NOT publishable"
        print(f"{args.file}: {report.rows} rows, {report.accepted} accepted, {report.rejected} rejected: {verdict}")
        if report.fatal:
            print(f"  rejected as a whole: {report.fatal}")
        for issue in report.errors[: args.limit]:
            column = f" column {issue.column}" if issue.column else ""
            print(f"  row {issue.row}{column}: {issue.code}: {issue.message}")
        if len(report.errors) > args.limit:
            print(f"  ... {len(report.errors) - args.limit} more (use --json for all)")
    return 0 if report.publishable else 1


# -------------------------------------------------------------------------------------------------- snapshot


def build_snapshot_files(campaign_path: str, feed_path: str, built_at: int | None = None) -> tuple[bytes, Any]:
    """Validate a campaign and a feed and build snapshot bytes; exits with a clear message on bad input."""
    from dco.feed import parse_feed
    from dco.snapshot import build_snapshot

    data, campaign = _load_campaign_file(campaign_path)
    feed_bytes = _read_bytes(feed_path)
    result = parse_feed(feed_bytes, campaign.feed, currency=campaign.currency)
    if not result.report.publishable or result.catalog is None:
        reason = result.report.fatal or "too many bad rows"
        raise SystemExit(f"dco: {feed_path}: feed rejected: {reason} (run `dco feed validate` for the report)")
    from dco.errors import ConfigError

    try:
        blob = build_snapshot(
            data,
            result.catalog,
            campaign=campaign,
            feed_sha256=hashlib.sha256(feed_bytes).hexdigest(),
            built_at=built_at,
        )
    except ConfigError as exc:
        raise SystemExit(f"dco: {campaign_path}: {exc}") from None
    return blob, result.report


def cmd_snapshot_build(args: argparse.Namespace) -> int:
    blob, report = build_snapshot_files(args.campaign, args.feed, args.built_at)
    Path(args.out).write_bytes(blob)
    from dco.snapshot import read_header

    _, version = read_header(blob)
    print(f"{args.out}: {len(blob):,} bytes, {report.accepted} products ({report.rejected} rows skipped), {version}")
    return 0


def cmd_snapshot_inspect(args: argparse.Namespace) -> int:
    from dco.errors import SnapshotError
    from dco.snapshot import describe, load_snapshot

    try:
        snapshot = load_snapshot(_read_bytes(args.file))
    except SnapshotError as exc:
        print(f"dco: {args.file}: {exc}", file=sys.stderr)
        return 2
    info = describe(snapshot)
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True))
        return 0
    print(f"snapshot      {args.file}")
    print(f"version       {info['version']}")
    print(f"format        v{info['format_version']}, {info['bytes']:,} bytes")
    print(f"campaign      {info['campaign']}  ({', '.join(f'{k}={v}' for k, v in info['counts'].items())})")
    print(f"products      {info['products']:,}")
    print(f"built by      {info['build']['builder']}  feed sha256 {info['build']['feed_sha256']}")
    print("columns       " + ", ".join(f"{k}:{v}" for k, v in sorted(info["columns"].items())))
    for column, values in sorted(info["indexes"].items()):
        top = sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
        shown = ", ".join(f"{k}={v:,}" for k, v in top)
        print(f"index         {column}: {len(values)} values ({shown}{', ...' if len(values) > 5 else ''})")
    for cid, count in sorted(info["creative_products"].items()):
        print(f"creative      {cid}: {count:,} products pass the static filters")
    return 0


# ------------------------------------------------------------------------------------------------------ main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dco", description="Dynamic Creative Optimization engine: local tools")
    sub = parser.add_subparsers(dest="command", required=True)

    feed = sub.add_parser("feed", help="product feeds").add_subparsers(dest="feed_command", required=True)
    validate = feed.add_parser("validate", help="validate a product feed and print the report")
    validate.add_argument("file")
    validate.add_argument("--config", help="campaign config whose feed section applies (column mapping, limits)")
    validate.add_argument("--json", action="store_true", help="machine-readable report")
    validate.add_argument("--limit", type=int, default=20, help="row errors to print (text mode)")
    validate.set_defaults(func=cmd_feed_validate)

    snap = sub.add_parser("snapshot", help="snapshots").add_subparsers(dest="snapshot_command", required=True)
    build = snap.add_parser("build", help="build a snapshot from a campaign and a feed")
    build.add_argument("--campaign", required=True)
    build.add_argument("--feed", required=True)
    build.add_argument("--out", required=True)
    build.add_argument("--built-at", type=int, default=None, help="unix time recorded in the build metadata")
    build.set_defaults(func=cmd_snapshot_build)
    inspect = snap.add_parser("inspect", help="print a snapshot's version, hash, counts and index cardinalities")
    inspect.add_argument("file")
    inspect.add_argument("--json", action="store_true")
    inspect.set_defaults(func=cmd_snapshot_inspect)

    from dco_local import bench

    bench.add_parser(sub)
    from dco_local import evaluate, parity, report, scenarios, simulate
    for module in (simulate, scenarios, parity, evaluate, report):
        module.add_parser(sub)
    from dco_local import demo  # the main job: dco demo

    demo.add_parser(sub)
    from dco_local import serve  # the local stack: dco serve, dco invoke

    serve.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    if "--pure-python" in (sys.argv[1:] if argv is None else argv):
        # before any dco module reads the accelerators: the engine then runs as in Pyodide without wheels
        from dco import _accel

        _accel.disable()
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
