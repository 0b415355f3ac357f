"""What a prepared chat turn holds until it ends: the conversation's turn lease and its
token reservation (see services/chat, "One turn at a time" and "Token budget")."""

from __future__ import annotations

import logging
import threading

from ion.domain.models import Usage
from ion.ports import ConversationStore
from ion.services.quota import QuotaGuard, Reservation

log = logging.getLogger(__name__)


class TurnHold:
    """What a prepared turn holds until it ends: the conversation's turn lease and a token
    reservation. Each is given back (or settled) exactly once, whichever path comes first.
    """

    def __init__(
        self,
        store: ConversationStore | None = None,
        conversation_id: str = "",
        lease: str | None = None,
        budget: QuotaGuard | None = None,
        reservation: Reservation | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._store = store
        self._conversation_id = conversation_id
        self._lease = lease
        self._budget = budget
        self._reservation = reservation

    @property
    def lease(self) -> str | None:
        """The lease to save the turn with (None: none held, e.g. a new conversation)."""
        return self._lease

    def saved(self) -> None:
        """The turn was saved with the lease, which released it in the same write."""
        with self._lock:
            self._lease = None

    def release_lease(self) -> None:
        with self._lock:
            lease, self._lease = self._lease, None
        if lease is None or self._store is None:
            return
        try:
            self._store.release_turn(self._conversation_id, lease)
        except Exception:
            # It expires on its own; the request's outcome must not change for this.
            log.exception("releasing a turn lease failed")

    def _take_reservation(self) -> tuple[QuotaGuard | None, Reservation | None]:
        with self._lock:
            reservation, self._reservation = self._reservation, None
        return self._budget, reservation

    def settle(self, usage: Usage) -> None:
        budget, reservation = self._take_reservation()
        if budget is not None:
            budget.settle(reservation, usage)

    def keep_reservation(self) -> None:
        """Charge the reservation as it is (the real usage of a cut-off call is unknown)."""
        self._take_reservation()

    def release_reservation(self) -> None:
        budget, reservation = self._take_reservation()
        if budget is not None:
            budget.release(reservation)

    def close(self) -> None:
        """Give back whatever is still held (idempotent)."""
        self.release_lease()
        self.release_reservation()
