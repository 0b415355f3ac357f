"""The one YAML loader of the domain's data files (persona catalog, reading lexicons).

Safe loading only, and stricter than PyYAML's default: a duplicate mapping key is an error
(PyYAML silently keeps the last one, which hides a mistyped or pasted-twice entry).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import yaml

from ion.errors import ConfigurationError

__all__ = ["parse_yaml"]

# libyaml's C parser when present: the data files load on every cold start, ~10x faster.
_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _UniqueKeyLoader(_SafeLoader):  # type: ignore[valid-type,misc]
    """SafeLoader that rejects duplicate mapping keys (PyYAML silently keeps the last)."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    mapping: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, Hashable):
            raise yaml.constructor.ConstructorError(
                None, None, "unhashable mapping key", key_node.start_mark
            )
        if key in mapping:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"duplicate key {key!r}",
                key_node.start_mark,
            )
        mapping[key] = loader.construct_object(value_node, deep=True)
    return mapping


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_unique_mapping,
)


def parse_yaml(text: str, *, source: str, error: type[ConfigurationError]) -> Any:
    """The YAML document in `text`; raises `error` naming `source` when it is not valid."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as exc:
        raise error(f"{source}: invalid YAML: {exc}") from exc
