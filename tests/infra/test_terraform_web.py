"""Contract between the web app, `ion serve` and its deployment in terraform/web.tf (parsed
with python-hcl2: no provider, no network): the bucket publishes every file the page needs
with the types and security headers `ion serve` uses, the load balancer routes the web
domain to it, and the APIs allow its origin."""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import hcl2

from ion.entrypoints.http.web import CONTENT_TYPES, PAGE_CSP
from tests.support.paths import REPO

ROOT = REPO
TF = ROOT / "terraform"
WEB = ROOT / "web"


def _unquote(value: Any) -> Any:
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    if isinstance(value, dict):
        return {_unquote(k): _unquote(v) for k, v in value.items() if not k.startswith("__")}
    if isinstance(value, list):
        return [_unquote(v) for v in value]
    return value


@cache
def _load(name: str) -> dict[str, Any]:
    with (TF / name).open(encoding="utf-8") as handle:
        parsed: dict[str, Any] = _unquote(hcl2.load(handle))
    return parsed


def _resource(name: str, kind: str, label: str) -> dict[str, Any]:
    for block in _load(name)["resource"]:
        if kind in block and label in block[kind]:
            found: dict[str, Any] = block[kind][label]
            return found
    raise AssertionError(f"{kind}.{label} not in {name}")


def _locals(name: str) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for block in _load(name)["locals"]:
        merged.update(block)
    return merged


def _directives(csp: str) -> dict[str, str]:
    parts = (p.strip() for p in csp.split(";"))
    return {p.split(" ", 1)[0]: p.split(" ", 1)[1] if " " in p else "" for p in parts if p}


def test_every_file_of_the_web_app_is_published_with_its_type() -> None:
    web = _locals("web.tf")
    pattern = re.fullmatch(
        r'\$\{\{for file in fileset\(local\.web_dir, "\*\.\{([a-z,]+)\}"\).*', web["web_files"]
    )
    assert pattern, web["web_files"]
    published = set(pattern.group(1).split(","))
    on_disk = {p.suffix.lstrip(".") for p in WEB.iterdir() if p.is_file()}
    assert on_disk == published == set(web["web_content_types"])
    for suffix, kind in web["web_content_types"].items():
        assert CONTENT_TYPES[f".{suffix}"] == kind  # what `ion serve` sends
    alias = _resource("web.tf", "google_storage_bucket_object", "web_operator_alias")
    assert (alias["name"], alias["source"]) == ("operator", "${local.web_dir}/operator.html")
    assert web["web_dir"] == "${path.module}/../web"


def test_the_deployed_csp_is_the_local_one_plus_the_api_and_the_identity_provider() -> None:
    web = _locals("web.tf")
    parts = re.findall(r'"([^"]+)"', web["web_csp"].removeprefix('${join(" ", ['))
    deployed = _directives(" ".join(parts))
    local = _directives(PAGE_CSP)
    connect = deployed.pop("connect-src").split()
    assert connect[0] == local.pop("connect-src") == "'self'"
    api_js = (WEB / "api.js").read_text(encoding="utf-8")
    identity = sorted(set(re.findall(r'"(https://[a-z.]+)/v1/', api_js)))
    assert identity == [
        "https://identitytoolkit.googleapis.com",
        "https://securetoken.googleapis.com",
    ]
    assert connect[1:] == ["${local.api_origin}", *identity]
    assert deployed == local
    assert "unsafe-inline" not in web["web_csp"] and "unsafe-eval" not in web["web_csp"]


def test_the_backend_bucket_sends_the_page_headers() -> None:
    backend = _resource("web.tf", "google_compute_backend_bucket", "web")
    assert backend["bucket_name"] == "${google_storage_bucket.web.name}"
    headers = dict(h.split(": ", 1) for h in backend["custom_response_headers"])
    assert headers == {
        "Content-Security-Policy": "${local.web_csp}",
        "Strict-Transport-Security": "max-age=63072000; includeSubDomains",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
    }
    bucket = _resource("web.tf", "google_storage_bucket", "web")
    assert bucket["uniform_bucket_level_access"] is True
    public = _resource("web.tf", "google_storage_bucket_iam_member", "web_public")
    assert (public["role"], public["member"]) == ("roles/storage.objectViewer", "allUsers")


def test_the_load_balancer_serves_the_web_domain_from_the_bucket() -> None:
    url_map = _resource("edge.tf", "google_compute_url_map", "edge")
    rules = {
        tuple(r["hosts"]) if isinstance(r["hosts"], list) else (r["hosts"],): r["path_matcher"]
        for r in url_map["host_rule"]
    }
    assert rules[("${var.web_domain}",)] == "web"
    matchers = {m["name"]: m for m in url_map["path_matcher"]}
    assert matchers["web"]["default_service"] == "${google_compute_backend_bucket.web.id}"
    cert = _resource("edge.tf", "google_compute_managed_ssl_certificate", "edge")
    assert "var.web_domain" in cert["managed"][0]["domains"]


def test_the_apis_allow_the_web_origin_and_the_page_finds_the_api() -> None:
    web = _locals("web.tf")
    assert web["web_origin"] == "https://${var.web_domain}"
    assert web["api_origin"] == "https://${var.edge_domains[0]}"
    common = _locals("functions.tf")["common_env"]
    assert common["ION_CORS_ORIGINS"] == "${local.web_origin}"
    config = web["web_config"]
    assert config["api_base"] == "${local.api_origin}"
    assert set(config) == {"api_base", "page_size", "auth"}
    # The sign-in modes the page knows (web/api.js).
    api_js = (WEB / "api.js").read_text(encoding="utf-8")
    modes = re.findall(r'mode = "(\w+)"', config["auth"])
    assert modes == ["none", "firebase"]
    # The page signs in with Firebase in that mode; in any other (none) it has no token.
    assert 'if (auth.mode !== "firebase") throw new ApiError(401' in api_js
    uploaded = _resource("web.tf", "google_storage_bucket_object", "web_config")
    assert (uploaded["name"], uploaded["content"]) == (
        "config.json",
        "${jsonencode(local.web_config)}",
    )
