"""`QuotaStore` on Cloud Firestore: one document per counter, `quota/{key}`.

Atomic without transactions: each increment is a write with a server-side `Increment`
transform (several counters in one commit: `increment_many`, a turn claim), and Firestore
returns the value after the transform in the write result, so concurrent callers (any number of instances) each see a distinct new value and
no write ever has to retry on contention. `expires_at` is meant for a Firestore TTL policy
on the `quota` collection group (README, Security), which deletes finished windows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from ion.adapters.firestore.rpc import (
    UNAVAILABLE,
    delete_matching,
    rpc_options,
    unavailable_errors,
)
from ion.errors import DependencyUnavailable
from ion.ports import CounterChange

QUOTA = "quota"

_RETRYABLE = (gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.InternalServerError)


def _errors() -> AbstractContextManager[None]:
    # Any API error, plus what is not one: RetryError when the bounded retry gives up, auth
    # errors. A limit check that cannot be made must be a 503 (fail closed), never a 500.
    return unavailable_errors("quota store", (gexc.GoogleAPICallError, *UNAVAILABLE))


def _doc_id(key: str) -> str:
    # Keys may contain '/' or be long; a digest is always a valid document id.
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def add_counter_change(collection: Any, batch: Any, change: CounterChange) -> None:
    """Add `change` to a write batch (also the conversation store's turn claim): a merge
    with a server-side `Increment`, whose result carries the value after it."""
    batch.set(
        collection.document(_doc_id(change.key)),
        {
            "key": change.key,
            "value": firestore.Increment(change.amount),
            "expires_at": change.expires_at,
        },
        merge=True,
    )


def counter_values(results: Sequence[Any]) -> list[int]:
    """The counters' values from the write results of `add_counter_change` writes."""
    values = []
    for result in results:
        transformed = list(result.transform_results)
        if not transformed:
            raise DependencyUnavailable("Firestore returned no value for the quota increment")
        values.append(int(transformed[0].integer_value))
    return values


class FirestoreQuotaStore:
    def __init__(self, client: firestore.Client, *, timeout_s: float = 5.0) -> None:
        self._client = client
        self._collection = client.collection(QUOTA)
        # A retried Increment may count twice (at worst one extra request refused; for a
        # negative one, a reservation given back twice), never zero times; bounded so a
        # limit check never outlives a request.
        self._rpc = rpc_options(timeout_s, _RETRYABLE)

    def increment(self, key: str, amount: int, *, expires_at: datetime) -> int:
        return self.increment_many([CounterChange(key=key, amount=amount, expires_at=expires_at)])[
            0
        ]

    def increment_many(self, changes: Sequence[CounterChange]) -> list[int]:
        batch = self._client.batch()
        for change in changes:
            add_counter_change(self._collection, batch, change)
        with _errors():
            results = batch.commit(**self._rpc)
        return counter_values(results)

    def delete_counters_with_prefix(self, prefix: str) -> int:
        """Every counter document whose `key` field starts with `prefix` (a range query on
        the automatic single-field index), deleted in batches."""
        query = (
            self._collection.where(filter=FieldFilter("key", ">=", prefix))
            .where(filter=FieldFilter("key", "<", prefix + "\uf8ff"))
            .select([])
            .limit(500)
        )
        with _errors():
            return delete_matching(self._client, query, self._rpc, 500)

    def counter(self, key: str) -> int:
        with _errors():
            snapshot = self._collection.document(_doc_id(key)).get(
                field_paths=["value"], **self._rpc
            )
        if not snapshot.exists:
            return 0
        value = snapshot.get("value")
        return int(value) if isinstance(value, int) else 0
