"""`QuotaStore` on Cloud Firestore: one document per counter, `quota/{key}`.

Atomic without transactions: each increment is a single write with a server-side
`Increment` transform, and Firestore returns the value after the transform in the write
result, so concurrent callers (any number of instances) each see a distinct new value and
no write ever has to retry on contention. `expires_at` is meant for a Firestore TTL policy
on the `quota` collection group (README, Security), which deletes finished windows.
"""

from __future__ import annotations

import hashlib
from contextlib import AbstractContextManager
from datetime import datetime

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

QUOTA = "quota"

_RETRYABLE = (gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.InternalServerError)


def _errors() -> AbstractContextManager[None]:
    # Any API error, plus what is not one: RetryError when the bounded retry gives up, auth
    # errors. A limit check that cannot be made must be a 503 (fail closed), never a 500.
    return unavailable_errors("quota store", (gexc.GoogleAPICallError, *UNAVAILABLE))


def _doc_id(key: str) -> str:
    # Keys may contain '/' or be long; a digest is always a valid document id.
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class FirestoreQuotaStore:
    def __init__(self, client: firestore.Client, *, timeout_s: float = 5.0) -> None:
        self._client = client
        self._collection = client.collection(QUOTA)
        # A retried Increment may count twice (at worst one extra request refused; for a
        # negative one, a reservation given back twice), never zero times; bounded so a
        # limit check never outlives a request.
        self._rpc = rpc_options(timeout_s, _RETRYABLE)

    def increment(self, key: str, amount: int, *, expires_at: datetime) -> int:
        ref = self._collection.document(_doc_id(key))
        with _errors():
            result = ref.set(
                {"key": key, "value": firestore.Increment(amount), "expires_at": expires_at},
                merge=True,
                **self._rpc,
            )
        transformed = list(result.transform_results)
        if not transformed:
            raise DependencyUnavailable("Firestore returned no value for the quota increment")
        return int(transformed[0].integer_value)

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
