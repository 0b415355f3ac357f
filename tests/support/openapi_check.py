"""Validate real HTTP responses against openapi.yaml (JSON Schema 2020-12, as OpenAPI 3.1)."""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Any

import yaml
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from werkzeug.test import TestResponse

from tests.support.paths import REPO

SPEC_URI = "urn:ion:openapi"


def _absolutise(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            k: (
                SPEC_URI + v
                if k == "$ref" and isinstance(v, str) and v.startswith("#")
                else _absolutise(v)
            )
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_absolutise(v) for v in node]
    return node


@cache
def spec() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "openapi.yaml").read_text(encoding="utf-8"))
    return loaded


@cache
def _registry() -> Registry[Any]:
    resource: Resource[Any] = Resource.from_contents(
        _absolutise(spec()), default_specification=DRAFT202012
    )
    registry: Registry[Any] = Registry().with_resource(SPEC_URI, resource)
    return registry


def _template_for(path: str) -> str:
    for template in spec()["paths"]:
        pattern = "^" + re.sub(r"\{\w+\}", "[^/]+", template) + "$"
        if re.match(pattern, path):
            return str(template)
    raise AssertionError(f"{path} is not documented in openapi.yaml")


def check_response(method: str, path: str, response: TestResponse) -> None:
    """Fail unless the status is documented for the operation and the body matches its schema."""
    operation = spec()["paths"][_template_for(path)].get(method.lower())
    assert operation is not None, f"{method} {path} is not documented"
    documented = operation["responses"].get(str(response.status_code))
    assert documented is not None, f"{method} {path} answered undocumented {response.status_code}"
    if "$ref" in documented:
        name = documented["$ref"].rsplit("/", 1)[-1]
        documented = spec()["components"]["responses"][name]
    content = documented.get("content")
    if not content:
        assert not response.data, f"{method} {path} {response.status_code} should have no body"
        return
    mimetype = response.mimetype
    assert mimetype in content, f"{method} {path} answered undocumented type {mimetype}"
    if mimetype != "application/json":
        return
    schema = _absolutise(content[mimetype]["schema"])
    Draft202012Validator(schema, registry=_registry()).validate(json.loads(response.data))


class CheckedClient:
    """A test client whose every response is validated against the OpenAPI document."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client

    def open(self, method: str, path: str, **kwargs: Any) -> TestResponse:
        response = self.client.open(path, method=method, **kwargs)
        check_response(method, path.split("?", 1)[0], response)
        return response

    def get(self, path: str, **kwargs: Any) -> TestResponse:
        return self.open("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> TestResponse:
        return self.open("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> TestResponse:
        return self.open("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> TestResponse:
        return self.open("DELETE", path, **kwargs)
