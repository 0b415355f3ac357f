"""The learner profile: GET/PUT /v1/me/profile, the mentor's suggestions the learner accepts,
the profile in prompts, on SQLite and the Firestore emulator."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ion.bootstrap import App, build_app, set_app
from ion.domain.profile import LearnerProfile, ProfileSuggestion, propose_updates
from tests.fakes.gemini import FakeGemini
from tests.support.app import function_client, make_settings
from tests.support.openapi_check import CheckedClient

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
FULL = {
    "goals": ["land a backend internship", "finish the capstone"],
    "level": "beginner",
    "stack": ["Python", "Django"],
    "preferred_language": "ko",
    "notes": "Works evenings; prefers short examples.",
}
SELF_INTRO = "I'm a beginner and I'm learning python. How do for loops work?"


@pytest.fixture
def api(chat_client: Any) -> CheckedClient:
    return CheckedClient(chat_client)


def test_a_new_learner_has_an_empty_profile(api: CheckedClient, auth: dict[str, str]) -> None:
    body = api.get("/v1/me/profile", headers=auth).get_json()
    assert body == {
        "profile": {
            "goals": [],
            "level": None,
            "stack": [],
            "preferred_language": None,
            "notes": "",
        },
        "suggestions": [],
        "updated_at": None,
    }


def test_put_replaces_the_profile_and_get_returns_it(
    api: CheckedClient, auth: dict[str, str], auth_bob: dict[str, str]
) -> None:
    put = api.put("/v1/me/profile", json=FULL, headers=auth)
    assert put.status_code == 200
    assert put.get_json()["profile"] == FULL
    assert api.get("/v1/me/profile", headers=auth).get_json()["profile"] == FULL
    # Someone else's profile is untouched.
    assert api.get("/v1/me/profile", headers=auth_bob).get_json()["profile"]["goals"] == []
    smaller = api.put("/v1/me/profile", json={"level": "advanced"}, headers=auth).get_json()
    assert smaller["profile"]["goals"] == [] and smaller["profile"]["level"] == "advanced"


@pytest.mark.parametrize(
    "body",
    [
        {"goals": ["g"] * 6},
        {"stack": ["x" * 41]},
        {"notes": "n" * 1001},
        {"level": "wizard"},
        {"preferred_language": "fr"},
        {"age": 20},
        {"notes": "bad\x07bell"},
        {"goals": ["  "]},
        {"goals": "not a list"},
    ],
)
def test_invalid_profiles_are_422_and_change_nothing(
    api: CheckedClient, auth: dict[str, str], body: dict[str, Any]
) -> None:
    api.put("/v1/me/profile", json=FULL, headers=auth)
    response = api.put("/v1/me/profile", json=body, headers=auth)
    assert response.status_code == 422
    assert api.get("/v1/me/profile", headers=auth).get_json()["profile"] == FULL


def test_the_mentor_proposes_and_the_learner_decides(
    api: CheckedClient, auth: dict[str, str]
) -> None:
    chat = api.post("/v1/chat", json={"message": SELF_INTRO}, headers=auth)
    assert chat.status_code == 200
    view = api.get("/v1/me/profile", headers=auth).get_json()
    assert view["profile"]["level"] is None  # never applied silently
    proposed = {(s["field"], s["value"]) for s in view["suggestions"]}
    assert proposed == {("level", "beginner"), ("stack", "python")}
    assert all(
        s["conversation_id"] == chat.get_json()["conversation_id"] for s in view["suggestions"]
    )

    level = next(s for s in view["suggestions"] if s["field"] == "level")
    stack = next(s for s in view["suggestions"] if s["field"] == "stack")
    accepted = api.post(
        f"/v1/me/profile/suggestions/{level['suggestion_id']}/accept", headers=auth
    ).get_json()
    assert accepted["profile"]["level"] == "beginner"
    assert [s["field"] for s in accepted["suggestions"]] == ["stack"]
    dismissed = api.delete(f"/v1/me/profile/suggestions/{stack['suggestion_id']}", headers=auth)
    assert dismissed.get_json()["suggestions"] == []
    assert dismissed.get_json()["profile"]["stack"] == []
    gone = api.post(f"/v1/me/profile/suggestions/{stack['suggestion_id']}/accept", headers=auth)
    assert gone.status_code == 404
    # Saying it again proposes nothing the profile already holds.
    api.post("/v1/chat", json={"message": SELF_INTRO}, headers=auth)
    again = api.get("/v1/me/profile", headers=auth).get_json()["suggestions"]
    assert [(s["field"], s["value"]) for s in again] == [("stack", "python")]


def test_proposals_read_first_person_statements_only() -> None:
    empty = LearnerProfile()
    assert propose_updates("my friend is a beginner", empty, []) == []
    assert propose_updates("저는 완전 초보예요", empty, []) == [("level", "beginner")]
    assert propose_updates("My goal is to pass the AWS exam.", empty, []) == [
        ("goals", "pass the AWS exam")
    ]
    pending = [
        ProfileSuggestion(
            id="s1", field="level", value="beginner", conversation_id="c", created_at=T0
        )
    ]
    assert propose_updates("I'm a beginner", empty, pending) == []


# --- the profile in prompts (Gemini through google-genai against the fake server) ---------


@pytest.fixture
def gemini_app(clean_env: Path, fake_gemini: FakeGemini) -> Iterator[App]:
    pytest.importorskip("google.genai")
    application = build_app(
        make_settings(
            clean_env / "data",
            llm_provider="gemini",
            gemini_api_key="test-key-profile",
            gemini_base_url=fake_gemini.base_url,
            gemini_model="gemini-profile-test",
            llm_max_attempts=1,
        )
    )
    set_app(application)
    yield application
    set_app(None)


def test_the_profile_shapes_the_prompt(gemini_app: App, fake_gemini: FakeGemini) -> None:
    api = CheckedClient(function_client("chat"))
    auth = {"Authorization": f"Bearer {gemini_app.dev_token('pia')}"}
    question = {"message": "How does a hash map handle collisions?"}
    api.post("/v1/chat", json=question, headers=auth)
    assert "About the learner" not in (fake_gemini.requests[-1].system_instruction or "")
    api.put("/v1/me/profile", json=FULL, headers=auth)
    api.post("/v1/chat", json=question, headers=auth)
    system = fake_gemini.requests[-1].system_instruction or ""
    assert "Explain for a beginner" in system
    assert "stack: Python, Django" in system
    assert "land a backend internship" in system


# --- both backends ----------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("firestore", marks=pytest.mark.emulator)])
def profiles(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "sqlite":
        from ion.adapters.sqlite.profiles import SqliteProfileStore

        return SqliteProfileStore(tmp_path / "profiles.sqlite3")
    from ion.adapters.firestore.profiles import FirestoreProfileStore

    client = request.getfixturevalue("firestore_client")
    request.getfixturevalue("firestore_reset")
    return FirestoreProfileStore(client)


def test_profile_store_contract(profiles: Any) -> None:
    user = "user/with:odd chars"
    assert profiles.get_learner(user) is None
    profile = LearnerProfile.model_validate(FULL)
    profiles.put_profile(user, profile, updated_at=T0)
    suggestion = ProfileSuggestion(
        id="s1", field="stack", value="react", conversation_id="c1", created_at=T0
    )
    profiles.put_suggestions(user, [suggestion])
    record = profiles.get_learner(user)
    assert record.profile == profile
    assert record.suggestions == [suggestion]
    assert record.updated_at == T0
    # Each write keeps the other part.
    profiles.put_profile(user, LearnerProfile(level="advanced"), updated_at=T0)
    assert profiles.get_learner(user).suggestions == [suggestion]
    profiles.put_suggestions(user, [])
    assert profiles.get_learner(user).profile.level == "advanced"
    assert profiles.delete_learner(user) is True
    assert profiles.get_learner(user) is None
    assert profiles.delete_learner(user) is False
    # Suggestions alone make a record with an empty profile.
    profiles.put_suggestions("other", [suggestion])
    assert profiles.get_learner("other").profile == LearnerProfile()
