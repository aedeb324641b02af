"""The S3 adapter: snapshots, pointers, stats and reports in the data bucket (docs/storage.md).

One class, :class:`S3Store`, implements two ports of the core:

* :class:`dco.warm.Source` for decide and track: ``fetch(key, etag)`` is a conditional GET (``IfNoneMatch``)
  that answers the object, :data:`~dco.warm.NOT_MODIFIED` (304) or ``None`` (no such key); every other failure
  (unreachable endpoint, throttling, 5xx, access denied) becomes :class:`~dco.warm.SourceError`, so the warm
  cache keeps serving what it has.
* :class:`dco.ingest.IngestStore` for ingest: reads, newest-key lookups, the immutable snapshot put
  (``IfNoneMatch='*'``), the conditional pointer swap (``IfMatch`` the old ETag, or ``IfNoneMatch='*'`` for a
  first publication; a 412 becomes :class:`~dco.ingest.PointerConflictError`) and report writes.

It also carries :meth:`S3Store.rollback`, which the ``dco rollback`` command calls to point a campaign back at an
earlier snapshot. The client is built only when none is given (tests pass moto's); ``session`` (a
``botocore.session.Session``, or a ``boto3.session.Session``) lets a handler build all its clients from one
session (one botocore loader).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from dco.errors import DcoError
from dco.warm import NOT_MODIFIED, Blob, SourceError, _NotModified

# dco.ingest (the feed and snapshot pipeline, ~190 ms of imports) is imported inside the IngestStore and rollback
# methods only: decide and track use this module as their Source and never need it (docs/performance.md,
# "coldstart").

_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_CONFLICT_CODES = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict", "409"})


class RollbackError(DcoError):
    """A rollback target does not exist, is not loadable, or the campaign has no pointer."""


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _status(exc: Exception) -> int:
    response = getattr(exc, "response", None) or {}
    return int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def s3_client(session: Any | None = None, *, response_checksums: str = "when_supported") -> Any:
    """An S3 client with short timeouts and standard retries.

    ``session`` is a ``botocore.session.Session`` (decide and track: no boto3 import, docs/performance.md,
    "coldstart"), a ``boto3.session.Session``, or None for boto3's default session. ``response_checksums`` is
    botocore's ``response_checksum_validation``: the serving functions pass ``"when_required"`` (see
    :meth:`dco.aws.handler_support.Clients.s3_store`).
    """
    from botocore.config import Config

    config = Config(
        connect_timeout=2,
        read_timeout=5,
        retries={"max_attempts": 3, "mode": "standard"},
        response_checksum_validation=response_checksums,
    )
    if session is None:
        import boto3

        return boto3.client("s3", config=config)
    if hasattr(session, "create_client"):  # botocore
        return session.create_client("s3", config=config)
    return session.client("s3", config=config)


class S3Store:
    """The data bucket. ``client`` is a boto3/botocore S3 client; one is built by :func:`s3_client` (from
    ``session`` when given) when omitted."""

    def __init__(self, bucket: str, client: Any | None = None, *, session: Any | None = None) -> None:
        if not bucket:
            raise ValueError("bucket name is required")
        self.bucket = bucket
        self.client = client if client is not None else s3_client(session)

    # ------------------------------------------------------------------------------- Source (decide, track)

    def fetch(self, key: str, etag: str | None = None) -> Blob | _NotModified | None:
        from botocore.exceptions import BotoCoreError, ClientError

        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if etag:
            kwargs["IfNoneMatch"] = etag
        try:
            response = self.client.get_object(**kwargs)
            body = response["Body"].read()
        except ClientError as exc:
            code, status = _code(exc), _status(exc)
            if status == 304 or code in ("304", "NotModified"):
                return NOT_MODIFIED
            if code in _MISSING_CODES or status == 404:
                return None
            raise SourceError(f"s3://{self.bucket}/{key}: {code or status}") from exc
        except BotoCoreError as exc:  # EndpointConnectionError, ReadTimeoutError, ...
            raise SourceError(f"s3://{self.bucket}/{key}: {type(exc).__name__}: {exc}") from exc
        return Blob(body=body, etag=str(response.get("ETag", "")))

    # ------------------------------------------------------------------------------------ IngestStore

    def read(self, key: str) -> bytes | None:
        """The object's bytes, or None when it does not exist (other failures raise)."""
        from botocore.exceptions import ClientError

        try:
            return bytes(self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read())
        except ClientError as exc:
            if _code(exc) in _MISSING_CODES or _status(exc) == 404:
                return None
            raise

    def list_objects(self, prefix: str) -> list[dict[str, Any]]:
        """Every object under ``prefix`` (``Key``, ``LastModified``, ``ETag``, ``Size``), all pages."""
        out: list[dict[str, Any]] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            out.extend(page.get("Contents", []))
        return out

    def newest(self, keys_or_prefix: Sequence[str] | str, suffixes: Sequence[str]) -> str | None:
        if isinstance(keys_or_prefix, str):
            candidates = [o for o in self.list_objects(keys_or_prefix) if o["Key"].endswith(tuple(suffixes))]
        else:
            wanted = set(keys_or_prefix)
            common = _common_prefix(list(wanted))
            candidates = [o for o in self.list_objects(common) if o["Key"] in wanted]
        if not candidates:
            return None
        return max(candidates, key=lambda o: (o["LastModified"], o["Key"]))["Key"]

    def read_pointer(self, campaign: str) -> tuple[dict[str, Any], str] | None:
        from botocore.exceptions import ClientError

        from dco.ingest import pointer_key

        try:
            response = self.client.get_object(Bucket=self.bucket, Key=pointer_key(campaign))
        except ClientError as exc:
            if _code(exc) in _MISSING_CODES or _status(exc) == 404:
                return None
            raise
        return json.loads(response["Body"].read()), str(response["ETag"])

    def put_snapshot(self, key: str, body: bytes) -> None:
        """Write an immutable snapshot; an existing object under the key is the same content (the key is the
        content hash), so a 412 is success."""
        from botocore.exceptions import ClientError

        try:
            self.client.put_object(
                Bucket=self.bucket, Key=key, Body=body, IfNoneMatch="*", ContentType="application/x-msgpack"
            )
        except ClientError as exc:
            if _code(exc) in _CONFLICT_CODES or _status(exc) in (409, 412):
                return
            raise

    def swap_pointer(self, campaign: str, pointer: Mapping[str, Any], etag: str | None) -> None:
        from botocore.exceptions import ClientError

        from dco.ingest import PointerConflictError, pointer_key

        condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        body = json.dumps(pointer, indent=1, sort_keys=True).encode()
        try:
            self.client.put_object(
                Bucket=self.bucket, Key=pointer_key(campaign), Body=body, ContentType="application/json",
                CacheControl="no-cache", **condition,
            )
        except ClientError as exc:
            code, status = _code(exc), _status(exc)
            # 412: the ETag moved; 409: a concurrent conditional write; 404 with IfMatch: the pointer vanished.
            if code in _CONFLICT_CODES or status in (409, 412) or (etag and (code in _MISSING_CODES or status == 404)):
                raise PointerConflictError(f"pointer of {campaign!r} changed concurrently") from exc
            raise

    def put_report(self, key: str, report: Mapping[str, Any]) -> None:
        body = json.dumps(report, indent=1, sort_keys=True, default=str).encode()
        self.client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/json")

    # --------------------------------------------------------------------------------------- operations

    def campaigns(self) -> list[str]:
        """Campaigns that have a pointer (published at least once)."""
        return sorted(
            o["Key"][len("pointers/") : -len(".json")] for o in self.list_objects("pointers/") if o["Key"].endswith(".json")
        )

    def rollback(
        self, campaign: str, version: str, *, now: int | None = None, max_attempts: int | None = None
    ) -> dict[str, Any]:
        """Point ``campaign`` back at an existing snapshot ``version`` (``sha256:<hex>`` or the bare hex).

        The snapshot is read and fully verified first (a corrupt or foreign object is refused with
        :class:`RollbackError`); the pointer keeps its sequence (only a newer drop replaces a rollback) and
        records the version it replaced in ``rolled_back_from`` and ``previous``. Returns the new pointer.
        ``max_attempts`` bounds the pointer swap retries (default :data:`dco.ingest.MAX_SWAP_ATTEMPTS`).
        """
        from dco.ingest import MAX_SWAP_ATTEMPTS, PointerConflictError, rollback_pointer, snapshot_key
        from dco.snapshot import load_snapshot

        if max_attempts is None:
            max_attempts = MAX_SWAP_ATTEMPTS
        version = version if version.startswith("sha256:") else f"sha256:{version}"
        try:
            key = snapshot_key(campaign, version)
        except ValueError as exc:
            raise RollbackError(str(exc)) from None
        blob = self.read(key)
        if blob is None:
            raise RollbackError(f"no snapshot {version} of campaign {campaign!r} (s3://{self.bucket}/{key})")
        try:
            snapshot = load_snapshot(blob)
        except DcoError as exc:
            raise RollbackError(f"snapshot {version} cannot be loaded: {exc}") from None
        if snapshot.campaign.id != campaign or snapshot.version != version:
            raise RollbackError(f"s3://{self.bucket}/{key} is not snapshot {version} of campaign {campaign!r}")
        published_at = int(now if now is not None else datetime.now(UTC).timestamp())
        for _ in range(max_attempts):
            found = self.read_pointer(campaign)
            if found is None:
                raise RollbackError(f"campaign {campaign!r} has no pointer; publish it first")
            current, etag = found
            pointer = rollback_pointer(current, version=version, published_at=published_at)
            try:
                self.swap_pointer(campaign, pointer, etag)
            except PointerConflictError:
                continue
            return pointer
        raise PointerConflictError(f"pointer of {campaign!r} kept changing; gave up after {max_attempts} tries")


def _common_prefix(keys: list[str]) -> str:
    if not keys:
        return ""
    first, last = min(keys), max(keys)
    size = 0
    while size < min(len(first), len(last)) and first[size] == last[size]:
        size += 1
    return first[:size]
