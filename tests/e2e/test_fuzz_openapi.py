"""Property-based fuzzing of the HTTP API from openapi.yaml (schemathesis + Hypothesis).

Every operation of the document runs against the real WSGI app (`ion serve`'s combined
app: both functions through the same dispatch) with a valid bearer token, on valid and
invalid generated data. No response may be a 5xx, and every response must conform to the
document (documented status, content type, headers and body schema).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from ion.adapters.tokens import issue_token
from ion.bootstrap import build_app, set_app
from ion.entrypoints.http.local import create_local_app
from tests.support.app import TEST_JWT_SECRET, make_settings
from tests.support.paths import REPO

# Bounded so the whole module stays well under a minute on 2 cores.
MAX_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))

# Signed with the secret the fuzzed app uses; schemathesis knows it as the bearerAuth
# credential, so it can also try requests without it (expecting 401). An operator's token,
# so the operator endpoints are fuzzed too instead of only answering 403.
TOKEN = issue_token(
    TEST_JWT_SECRET,
    "fuzzer",
    now=datetime.now(UTC),
    ttl_s=3600,
    role=("ion_role", "operator"),
)
CONFIG = schemathesis.Config.from_dict(
    {
        "auth": {"openapi": {"bearerAuth": {"bearer": TOKEN}}},
        "checks": {
            # Invalid input may also be refused as too large (413) or not JSON (415).
            "negative_data_rejection": {
                "expected-statuses": ["400", "401", "403", "404", "405", "413", "415", "422"]
            },
            # Off on purpose: schema-valid input may still be refused by rules JSON Schema
            # cannot express (a message of only spaces is 422, an unknown conversation 404).
            "positive_data_acceptance": {"enabled": False},
        },
        # Unknown query parameters are ignored (as most HTTP APIs do), not refused.
        "generation": {"allow-extra-parameters": False},
    }
)
schema = schemathesis.openapi.from_path(REPO / "openapi.yaml", config=CONFIG)
schema.app = create_local_app()


@pytest.fixture(scope="module", autouse=True)
def fuzz_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("ION_"):
                patch.delenv(name)
        application = build_app(
            make_settings(
                tmp_path_factory.mktemp("fuzz") / "data",
                rate_limit_per_minute=0,  # limits have their own tests; here they would
                api_rate_limit_per_minute=0,  # turn most examples into 429s
                daily_token_budget=0,
            )
        )
        set_app(application)
        try:
            yield
        finally:
            set_app(None)


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_openapi(case: schemathesis.Case[Any]) -> None:
    case.call_and_validate()
