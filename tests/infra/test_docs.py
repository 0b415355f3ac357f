"""The README stays true: the configuration table is exactly what the settings define."""

from __future__ import annotations

from ion.settings import settings_table
from tests.support.paths import REPO


def test_readme_configuration_table_lists_every_setting() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    start = readme.index("<!-- settings-table:start -->") + len("<!-- settings-table:start -->")
    end = readme.index("<!-- settings-table:end -->")
    assert readme[start:end].strip() == settings_table(), (
        "README configuration table is stale: regenerate it with\n  make docs"
    )


def test_readme_quickstart_commands() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "make run" in readme and "make test" in readme
