"""What several `ion` commands share: the app a terminal command builds, a quick store check."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ion.adapters.logging import one_line
from ion.errors import DependencyUnavailable, IonError

if TYPE_CHECKING:
    from ion.bootstrap import App

# Commands run by a person at a terminal: a store that does not answer fails within this
# many seconds (the servers keep ION_STORE_TIMEOUT_S).
CLI_STORE_TIMEOUT_S = 3.0


def cli_app() -> App:
    from ion.bootstrap import build_app
    from ion.settings import Settings

    settings = Settings()
    timeout = min(settings.store_timeout_s, CLI_STORE_TIMEOUT_S)
    return build_app(settings.model_copy(update={"store_timeout_s": timeout}))


def check_store(app: App) -> None:
    """Fail fast, in one line, when the store cannot be reached."""
    try:
        app.store.ping()
    except IonError as exc:
        raise DependencyUnavailable(
            f"the {app.settings.backend} store cannot be reached: {one_line(exc)}"
        ) from None
