"""The Events table writer: one item per distinct impression, click or conversion (docs/storage.md).

Data flow::

    verified TokenClaims ──event_item(kind, claims, now=..., ttl_seconds=...)──> item (plain dict)
    item ──EventsTable.put(item)──> True (stored) | False (a repeated beacon: the item exists already)

``pk`` is ``<campaign>#<event_key>`` (:func:`dco.tracking.event_key`), and the put is conditional on
``attribute_not_exists(pk)``: a repeated beacon (a reloaded page, a retried pixel, a double click) is stored
once, and the Events stream, hence fold, sees it once. When DynamoDB cannot take the write after the client's
own retries (throttling, a 5xx, an unreachable endpoint), ``put`` raises :class:`EventsUnavailableError`, which
track answers with 503 and ``Retry-After``: a server-side condition, not the caller's mistake, and nothing was
stored, so a retried beacon is counted once. Items carry no user-level data: the token has no user id,
and the context values are coarse (region, device type). ``expires_at`` drives DynamoDB TTL.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from dco.errors import DcoError
from dco.tracking import KIND_TO_PATH, TokenClaims, event_key

# DynamoDB error codes that mean "not now" rather than "never": throttling and server-side failures.
_UNAVAILABLE_CODES = frozenset({
    "ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded",
    "InternalServerError", "ServiceUnavailable", "TransactionInProgressException",
})


class EventsUnavailableError(DcoError):
    """The Events table could not take a write after the client's retries (throttled, 5xx, unreachable).
    Nothing was stored; the beacon may be retried (a server-side condition: 503)."""


def event_item(
    kind: str,
    claims: TokenClaims,
    *,
    now: int,
    ttl_seconds: int,
    order_id: str | None = None,
    value: float | None = None,
    currency: str | None = None,
) -> dict[str, Any]:
    """The Events item of one verified beacon. ``kind`` is ``impression``, ``click`` or ``conversion``; the item's
    ``kind`` attribute is the short form fold counts (``imp``, ``click``, ``conv``)."""
    item: dict[str, Any] = {
        "pk": f"{claims.campaign}#{event_key(kind, claims, order_id)}",
        "campaign": claims.campaign,
        "kind": KIND_TO_PATH[kind],
        "experience": claims.experience,
        "decision": claims.decision_id,
        "snapshot": claims.snapshot,
        "arm": claims.arm,
        "creative": claims.creative,
        "variants": list(claims.variants),
        "context": dict(claims.context),
        "holdout": claims.holdout,
        "ts": now,
        "expires_at": now + ttl_seconds,
    }
    if claims.product is not None:
        item["product"] = claims.product
    if kind == "conversion":
        item["value"] = Decimal(str(value if value is not None else 0))
        if currency:
            item["currency"] = currency
    return item


class EventsTable:
    """Conditional writes to the Events table. ``client`` is a boto3 DynamoDB client, built when omitted (from
    ``session``, a ``boto3.session.Session``, when given)."""

    def __init__(self, table_name: str, client: Any | None = None, *, session: Any | None = None) -> None:
        if not table_name:
            raise ValueError("events table name is required (DCO_EVENTS_TABLE)")
        self.table_name = table_name
        if client is None:
            from botocore.config import Config

            if session is None:
                import boto3

                session = boto3
            client = session.client(
                "dynamodb",
                config=Config(connect_timeout=2, read_timeout=3, retries={"max_attempts": 3, "mode": "standard"}),
            )
        self.client = client
        from boto3.dynamodb.types import TypeSerializer

        self._serializer = TypeSerializer()

    def put(self, item: Mapping[str, Any]) -> bool:
        """Store the item unless its ``pk`` exists. True when stored, False for a duplicate."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.put_item(
                TableName=self.table_name,
                Item={name: self._serializer.serialize(value) for name, value in item.items()},
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code == "ConditionalCheckFailedException":
                return False
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            if code in _UNAVAILABLE_CODES or status >= 500:
                raise EventsUnavailableError(f"{self.table_name}: {code or status}") from exc
            raise
        except BotoCoreError as exc:  # EndpointConnectionError, ReadTimeoutError, ...
            raise EventsUnavailableError(f"{self.table_name}: {type(exc).__name__}") from exc
        return True
