"""Persona catalog: packaged file validity and clear errors on bad files."""

from __future__ import annotations

from pathlib import Path

import pytest

from ion.domain.personas import CatalogError, PersonaCatalog, default_catalog_path, load_catalog
from ion.errors import NotFound

MINIMAL = """
version: 1
personas:
  - id: {pid}
    name: Test
    name_ko: 테스트
    role: tester
    style: terse
    system_prompt: {{ko: "한국어 프롬프트", en: "English prompt"}}
    traits:
      keywords:
        - weight: 2.0
          terms: [alpha, 알파]
"""


def test_packaged_catalog_has_the_four_charter_personas() -> None:
    catalog = load_catalog()
    assert catalog.ids == ["lua", "elro", "riri", "nana"]
    names = {p.id: (p.name, p.name_ko) for p in catalog.all()}
    assert names == {
        "lua": ("Lua", "루아"),
        "elro": ("Elro", "엘로"),
        "riri": ("Riri", "리리"),
        "nana": ("Nana", "나나"),
    }
    for p in catalog.all():
        assert set(p.system_prompt) == {"ko", "en"}
        assert len(p.system_prompt["ko"]) > 200 and len(p.system_prompt["en"]) > 300
        assert len(p.traits.keywords) > 100, "lexicons must be broad to generalise"
        assert p.traits.cue_label


def test_load_catalog_is_cached_and_default_path_is_packaged() -> None:
    assert load_catalog() is load_catalog()
    assert load_catalog() is load_catalog(default_catalog_path())
    assert default_catalog_path().name == "personas.yaml"


def test_get_and_require() -> None:
    catalog = load_catalog()
    lua = catalog.get("lua")
    assert lua is not None and lua.role == "empathetic encourager"
    assert catalog.get("nope") is None
    assert catalog.require("nana").name == "Nana"
    with pytest.raises(NotFound, match="unknown persona 'nope'"):
        catalog.require("nope")
    assert "elro" in catalog and len(catalog) == 4


def test_minimal_catalog_loads(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text(MINIMAL.format(pid="tester"), encoding="utf-8")
    catalog = load_catalog(f)
    assert catalog.ids == ["tester"]
    assert catalog.require("tester").traits.keywords == {"alpha": 2.0, "알파": 2.0}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            MINIMAL.format(pid="dup") + MINIMAL.format(pid="dup").split("personas:")[1],
            "duplicate persona id 'dup'",
        ),
        (MINIMAL.format(pid="x1").replace('en: "English prompt"', 'en: ""'), "missing language"),
        (MINIMAL.format(pid="x1").replace("[alpha, 알파]", "[alpha, Alpha]"), "listed twice"),
        (MINIMAL.format(pid="x1").replace("weight: 2.0", "weight: 99"), "within"),
        (
            MINIMAL.format(pid="x1").replace("name: Test", "name: Test\n    name: Again"),
            "duplicate key",
        ),
        (MINIMAL.format(pid="Bad Id"), "pattern"),
        (
            MINIMAL.format(pid="x1").replace("style: terse", "style: terse\n    colour: red"),
            "colour",
        ),
        (MINIMAL.format(pid="x1") + "      feature_affinity: {vibes: 1.0}\n", "unknown feature"),
        (
            MINIMAL.format(pid="x1")
            + "      patterns:\n        - weight: 1\n          regex: ['(']\n",
            "invalid regex",
        ),
        ("personas: []", "personas"),
        ("- just\n- a list", "expected a mapping"),
        ("personas: [", "invalid YAML"),
    ],
)
def test_bad_catalogs_fail_clearly(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(text, encoding="utf-8")
    with pytest.raises(CatalogError, match=message) as info:
        PersonaCatalog.from_path(f)
    assert str(f) in str(info.value)


def test_missing_file_is_a_catalog_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="cannot read"):
        PersonaCatalog.from_path(tmp_path / "absent.yaml")
