"""The persona catalog: personas (prompts + routing traits) loaded from a YAML data file.

The router is generic over this catalog, so adding a persona is a data change only. The file
is validated strictly when it loads (unknown fields, duplicate ids or YAML keys, missing
prompt languages, bad regexes, unknown feature names) and fails with a message that names
the file and the offending entry.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ion.domain.models import Intent, Language, Persona, RoutingTraits, Tone
from ion.domain.orchestration import OrchestrationPolicy
from ion.domain.resonance import FEATURE_NAMES
from ion.domain.yaml_data import parse_yaml
from ion.errors import ConfigurationError, NotFound

__all__ = ["CatalogError", "PersonaCatalog", "default_catalog_path", "load_catalog"]

_LANGUAGES: tuple[Language, ...] = ("ko", "en")
_MAX_WEIGHT = 10.0


class CatalogError(ConfigurationError):
    """The persona catalog file is missing or invalid."""


def default_catalog_path() -> Path:
    return Path(__file__).with_name("personas.yaml")


# --- file schema (what authors write) --------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_weight(value: float, what: str) -> float:
    if not math.isfinite(value) or abs(value) > _MAX_WEIGHT:
        raise ValueError(f"{what} weight {value!r} must be finite and within ±{_MAX_WEIGHT}")
    return value


class _TermGroup(_Strict):
    """Terms sharing one weight: keeps the YAML readable (weight first, then the cues)."""

    weight: float
    terms: list[str] = Field(min_length=1)
    note: str = ""

    @field_validator("weight")
    @classmethod
    def _weight_ok(cls, v: float) -> float:
        return _check_weight(v, "term group")


class _PatternGroup(_Strict):
    weight: float
    regex: list[str] = Field(min_length=1)
    note: str = ""

    @field_validator("weight")
    @classmethod
    def _weight_ok(cls, v: float) -> float:
        return _check_weight(v, "pattern group")

    @field_validator("regex")
    @classmethod
    def _compiles(cls, v: list[str]) -> list[str]:
        for rx in v:
            try:
                re.compile(rx)
            except re.error as exc:
                raise ValueError(f"invalid regex {rx!r}: {exc}") from exc
        return v


class _TraitsSpec(_Strict):
    prior: float = 0.0
    cue_label: str = ""
    tone_affinity: dict[Tone, float] = Field(default_factory=dict)
    intent_affinity: dict[Intent, float] = Field(default_factory=dict)
    feature_affinity: dict[str, float] = Field(default_factory=dict)
    keywords: list[_TermGroup] = Field(default_factory=list)
    patterns: list[_PatternGroup] = Field(default_factory=list)

    @field_validator("feature_affinity")
    @classmethod
    def _known_features(cls, v: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(v) - set(FEATURE_NAMES))
        if unknown:
            raise ValueError(f"unknown feature(s) {unknown}; known: {list(FEATURE_NAMES)}")
        return v

    def to_traits(self) -> RoutingTraits:
        keywords: dict[str, float] = {}
        for group in self.keywords:
            for term in group.terms:
                key = term.strip()
                if not key or key == "$":
                    raise ValueError("empty keyword term")
                if key.lower() in (k.lower() for k in keywords):
                    raise ValueError(f"keyword {key!r} is listed twice")
                keywords[key] = group.weight
        patterns: dict[str, float] = {}
        for pgroup in self.patterns:
            for rx in pgroup.regex:
                if rx in patterns:
                    raise ValueError(f"pattern {rx!r} is listed twice")
                patterns[rx] = pgroup.weight
        for name, table in (
            ("tone_affinity", self.tone_affinity),
            ("intent_affinity", self.intent_affinity),
            ("feature_affinity", self.feature_affinity),
        ):
            for key2, weight in table.items():
                _check_weight(weight, f"{name}[{key2}]")
        return RoutingTraits(
            keywords=keywords,
            patterns=patterns,
            tone_affinity=dict(self.tone_affinity),
            intent_affinity=dict(self.intent_affinity),
            feature_affinity=dict(self.feature_affinity),
            prior=_check_weight(self.prior, "prior"),
            cue_label=self.cue_label,
        )


class _PersonaSpec(_Strict):
    id: str
    name: str = Field(min_length=1)
    name_ko: str = Field(min_length=1)
    role: str = Field(min_length=1)
    style: str = Field(min_length=1)
    system_prompt: dict[str, str]
    temperature: float = 0.7
    traits: _TraitsSpec = Field(default_factory=_TraitsSpec)

    @field_validator("system_prompt")
    @classmethod
    def _all_languages(cls, v: dict[str, str]) -> dict[str, str]:
        missing = [lang for lang in _LANGUAGES if not v.get(lang, "").strip()]
        extra = sorted(set(v) - set(_LANGUAGES))
        if missing:
            raise ValueError(f"system_prompt is missing language(s) {missing}")
        if extra:
            raise ValueError(f"system_prompt has unsupported language(s) {extra}")
        return v

    def to_persona(self) -> Persona:
        return Persona(
            id=self.id,
            name=self.name,
            name_ko=self.name_ko,
            role=self.role,
            style=self.style,
            system_prompt={"ko": self.system_prompt["ko"], "en": self.system_prompt["en"]},
            temperature=self.temperature,
            traits=self._traits(),
        )

    def _traits(self) -> RoutingTraits:
        try:
            return self.traits.to_traits()
        except ValueError as exc:
            raise ValueError(f"persona {self.id!r}: {exc}") from exc


class _CatalogSpec(_Strict):
    version: int = 1
    personas: list[_PersonaSpec] = Field(min_length=1)
    # How turns are answered (single, duo, clarify); without it every turn is single.
    orchestration: OrchestrationPolicy | None = None


class PersonaCatalog:
    """An ordered, validated set of personas. Order = file order (used to break exact ties)."""

    def __init__(
        self,
        personas: list[Persona],
        *,
        source: str = "<memory>",
        orchestration: OrchestrationPolicy | None = None,
    ) -> None:
        if not personas:
            raise CatalogError(f"{source}: the catalog defines no personas")
        seen: set[str] = set()
        for p in personas:
            if p.id in seen:
                raise CatalogError(f"{source}: duplicate persona id {p.id!r}")
            seen.add(p.id)
            missing = [lang for lang in _LANGUAGES if not p.system_prompt.get(lang)]
            if missing:
                raise CatalogError(f"{source}: persona {p.id!r} lacks system_prompt {missing}")
        if orchestration is not None:
            try:
                orchestration.check_personas([p.id for p in personas])
            except ValueError as exc:
                raise CatalogError(f"{source}: {exc}") from exc
        self._personas = tuple(personas)
        self._by_id = {p.id: p for p in personas}
        self.source = source
        self.orchestration = orchestration

    @classmethod
    def from_yaml_text(cls, text: str, *, source: str = "<string>") -> PersonaCatalog:
        data = parse_yaml(text, source=source, error=CatalogError)
        if not isinstance(data, dict):
            raise CatalogError(f"{source}: expected a mapping with a 'personas' list")
        try:
            spec = _CatalogSpec.model_validate(data)
            personas = [p.to_persona() for p in spec.personas]
        except ValidationError as exc:
            raise CatalogError(f"{source}: invalid persona catalog:\n{exc}") from exc
        except ValueError as exc:
            raise CatalogError(f"{source}: invalid persona catalog: {exc}") from exc
        return cls(personas, source=source, orchestration=spec.orchestration)

    @classmethod
    def from_path(cls, path: Path) -> PersonaCatalog:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise CatalogError(f"cannot read persona catalog {path}: {exc}") from exc
        return cls.from_yaml_text(text, source=str(path))

    @property
    def ids(self) -> list[str]:
        return [p.id for p in self._personas]

    def all(self) -> list[Persona]:
        return list(self._personas)

    def get(self, persona_id: str) -> Persona | None:
        return self._by_id.get(persona_id)

    def require(self, persona_id: str) -> Persona:
        persona = self._by_id.get(persona_id)
        if persona is None:
            raise NotFound(f"unknown persona {persona_id!r}; known: {', '.join(self.ids)}")
        return persona

    def __contains__(self, persona_id: object) -> bool:
        return persona_id in self._by_id

    def __len__(self) -> int:
        return len(self._personas)

    def __repr__(self) -> str:
        return f"PersonaCatalog({self.ids!r}, source={self.source!r})"


@lru_cache(maxsize=8)
def _load_cached(path: Path) -> PersonaCatalog:
    return PersonaCatalog.from_path(path)


def load_catalog(path: Path | None = None) -> PersonaCatalog:
    """Load (and cache per resolved path) a catalog; default = the packaged personas.yaml."""
    return _load_cached((path or default_catalog_path()).resolve())
