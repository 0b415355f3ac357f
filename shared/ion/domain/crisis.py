"""The safe answer for a learner in crisis: resources, the safe prompt and the template.

All of it is data (`crisis.yaml`); operators replace the resources per deployment with
ION_CRISIS_RESOURCES_FILE. Whatever persona the router chose, a crisis turn is answered in
the policy's persona's voice, with the safe-messaging prompt, and always ends with the
resources of the message's language: if the model's answer leaves them out, they are
appended, and when no model may or can answer, the template answers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ion.domain.models import CrisisResource, Language, LlmRequest, Message, RoutingDecision
from ion.domain.prompts import history_turns
from ion.errors import ConfigurationError

__all__ = ["CrisisPolicy", "load_policy"]

_LANGUAGES: tuple[Language, ...] = ("ko", "en")


class _Resources(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    resources: dict[Language, list[CrisisResource]]

    @model_validator(mode="after")
    def _every_language(self) -> _Resources:
        for language in _LANGUAGES:
            if not self.resources.get(language):
                raise ValueError(f"resources for '{language}' are missing or empty")
        for items in self.resources.values():
            for r in items:
                if r.phone is None and r.url is None:
                    raise ValueError(f"resource {r.name!r} needs a phone or a url")
        return self


class MovedOn(BaseModel):
    """What the safe answer adds when the learner moved on to another question after
    distress: a line of the safe prompt, and the template's opening."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    prompt: dict[Language, str]
    template: dict[Language, str]


class CrisisPolicy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    persona: str = Field(min_length=1)
    resources: dict[Language, list[CrisisResource]]
    prompt: dict[Language, str]
    template: dict[Language, str]
    moved_on: MovedOn

    @model_validator(mode="after")
    def _every_language(self) -> CrisisPolicy:
        texts = {
            "prompt": self.prompt,
            "template": self.template,
            "moved_on.prompt": self.moved_on.prompt,
            "moved_on.template": self.moved_on.template,
        }
        for name, by_language in texts.items():
            for language in _LANGUAGES:
                if not by_language.get(language, "").strip():
                    raise ValueError(f"{name} for '{language}' is missing or empty")
        return self

    def override(self, decision: RoutingDecision, persona_name: str) -> RoutingDecision:
        """The routing decision of a crisis turn: the policy's persona answers."""
        secondary = decision.primary if decision.primary != self.persona else decision.secondary
        return decision.model_copy(
            update={
                "primary": self.persona,
                "secondary": secondary,
                "reason": f"safety: crisis language, safe answer by {persona_name};"
                f" router: {decision.reason}",
            }
        )

    def resources_for(self, language: Language) -> tuple[CrisisResource, ...]:
        return tuple(self.resources[language])

    def _resource_lines(self, language: Language) -> str:
        return "\n".join(r.line() for r in self.resources[language])

    def template_answer(self, language: Language, *, moved_on: bool = False) -> str:
        """The template answer; opening with `moved_on.template` when the learner moved on
        to another question after distress."""
        text = self.template[language].replace("{resources}", self._resource_lines(language))
        return f"{self.moved_on.template[language]}\n\n{text}" if moved_on else text

    def with_resources(self, text: str, language: Language) -> str:
        """`text`, with the resource lines appended unless every contact is already in it."""
        contacts = [c for r in self.resources[language] for c in (r.phone, r.url) if c]
        if all(contact in text for contact in contacts):
            return text
        return f"{text.rstrip()}\n\n{self._resource_lines(language)}"

    def request(
        self,
        *,
        language: Language,
        history: Sequence[Message],
        message: str,
        history_window: int,
        max_output_tokens: int,
        moved_on: bool = False,
    ) -> LlmRequest:
        """The LLM request for a crisis turn: the safe prompt instead of the persona's, with
        the line for a learner who moved on to another question when `moved_on`."""
        extra = f"\n{self.moved_on.prompt[language]}" if moved_on else ""
        return LlmRequest(
            persona_id=self.persona,
            system_prompt=self.prompt[language]
            .replace("{resources}", self._resource_lines(language))
            .replace("{moved_on}", extra),
            history=history_turns(history, history_window),
            message=message,
            language=language,
            temperature=0.3,
            max_output_tokens=max_output_tokens,
        )


def default_policy_path() -> Path:
    return Path(__file__).with_name("crisis.yaml")


def _read(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
        return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise ConfigurationError(f"cannot read {path}: {exc}") from exc


def load_policy(resources_file: Path | None = None) -> CrisisPolicy:
    """The packaged policy, with the resources replaced by `resources_file` when given."""
    data = _read(default_policy_path())
    if resources_file is not None:
        override = _read(resources_file)
        try:
            data["resources"] = _Resources.model_validate(override).model_dump()["resources"]
        except ValidationError as exc:
            raise ConfigurationError(
                f"crisis resources file {resources_file}: {_summary(exc)}"
            ) from None
    try:
        policy = CrisisPolicy.model_validate(data)
        _Resources(resources=policy.resources)
    except ValidationError as exc:
        raise ConfigurationError(f"crisis policy: {_summary(exc)}") from None
    return policy


def _summary(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(x) for x in e['loc']) or 'file'}: {e['msg']}" for e in exc.errors()
    )
