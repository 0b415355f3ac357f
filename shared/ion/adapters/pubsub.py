"""Google Cloud Pub/Sub transport for domain events.

Imported only when the gcp backend is configured; `google.cloud.pubsub_v1` is imported
lazily inside so the package stays importable without the `gcp` extra.
"""

from __future__ import annotations

import threading
from typing import Any

from ion.domain import events


class PubSubTransport:
    """EventTransport that publishes each envelope as one Pub/Sub message.

    Message data is the canonical JSON envelope; attributes are `event_type`,
    `schema_version` and `event_id` so subscriptions can filter without decoding.
    `send` blocks until Pub/Sub acknowledges or `timeout_s` passes, and raises on any
    failure: retrying and the outbox are ReliablePublisher's job, so the client's own retry
    is bounded by the same timeout instead of its default (minutes).

    The client honours PUBSUB_EMULATOR_HOST by itself, which is how tests reach the emulator.
    """

    def __init__(
        self,
        project: str,
        topic: str,
        *,
        publisher_client: Any | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError("timeout_s must be > 0")
        self._topic_path = (
            topic if topic.startswith("projects/") else (f"projects/{project}/topics/{topic}")
        )
        self._client = publisher_client
        self._owns_client = publisher_client is None
        self._timeout_s = timeout_s
        self._lock = threading.Lock()

    @property
    def topic_path(self) -> str:
        return self._topic_path

    def _publisher(self) -> Any:
        # Created on first use: constructing it resolves credentials, which must not happen
        # at import or composition time (e.g. `ion --help` on a laptop without ADC).
        with self._lock:
            if self._client is None:
                # Submodule import (not `from google.cloud import pubsub_v1`): pubsub ships
                # no type information, and this form lets mypy treat it as Any.
                from google.cloud.pubsub_v1 import PublisherClient

                self._client = PublisherClient()
            return self._client

    def _retry(self) -> Any:
        from google.api_core import exceptions

        from ion.adapters.google_retry import bounded_retry

        return bounded_retry(
            self._timeout_s,
            exceptions.ServiceUnavailable,
            exceptions.DeadlineExceeded,
            exceptions.InternalServerError,
            exceptions.Aborted,
            exceptions.ResourceExhausted,
        )

    def ensure_topic(self) -> bool:
        """Create the topic if it is missing; True when it was created.

        For local runs on the Pub/Sub emulator only: in production Terraform owns topics and
        the function's service account is not allowed to create them.
        """
        from google.api_core import exceptions

        try:
            self._publisher().create_topic(name=self._topic_path, timeout=self._timeout_s)
        except exceptions.AlreadyExists:
            return False
        return True

    def send(self, event_type: str, envelope: dict[str, Any]) -> None:
        data = events.encode_event(envelope)
        attributes = events.event_attributes(envelope)
        attributes["event_type"] = event_type
        future = self._publisher().publish(
            self._topic_path,
            data,
            retry=self._retry(),
            timeout=self._timeout_s,
            **attributes,
        )
        # Raises the publish error: the bounded retry's RetryError (with the last cause) when
        # it gives up. The wait outlives the retry's deadline so that its verdict, not a
        # bare TimeoutError of this wait, surfaces even on a loaded machine; TimeoutError
        # only when the client itself hangs (the message may still land later;
        # at-least-once delivery covers that).
        future.result(timeout=2 * self._timeout_s)

    def close(self) -> None:
        """Flush pending messages and stop the client's background threads (if we own it)."""
        if not self._owns_client:
            return
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.stop()
