"""Contract tests between the code and terraform/: what the functions need is what they get.

They parse the Terraform with python-hcl2 (no provider, no network) and compare it with the
real Settings model, the packaging spec (scripts/package.py), the functions' main.py and
docs/data-model.md.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import sys
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import hcl2
import pytest

from ion.domain.operating_points import OPERATING_POINTS
from ion.settings import Settings
from tests.support.paths import REPO as ROOT

TF = ROOT / "terraform"
MODULE = TF / "modules" / "function"

# What each deployed entry point needs in production, beyond what every function needs.
# "provided" means set in the function's environment or secret environment; None = any value.
COMMON_REQUIRED: dict[str, str | None] = {
    "ION_BACKEND": "gcp",
    "ION_GCP_PROJECT": None,
    "ION_FIRESTORE_DATABASE": None,
    "ION_SECRETS_BACKEND": "env",
}
# HTTP entry points build the whole app (store, token verifier, LLM, event publisher).
APP_REQUIRED: dict[str, str | None] = {"ION_EVENTS_TOPIC": None, "ION_LLM_PROVIDER": None}
REQUIRED: dict[str, dict[str, str | None]] = {
    "chat": {**APP_REQUIRED, "ION_LLM_PROVIDER": "gemini", "ION_GEMINI_MODEL": None},
    "persona_route": {**APP_REQUIRED, "ION_LLM_PROVIDER": "offline"},
    # Workers (ion.bootstrap.get_worker): store and routing statistics only.
    "persona_events": {},
    "backup": {
        "ION_BACKUP_MODE": "firestore-export",
        "ION_BACKUP_BUCKET": None,
        "ION_BACKUP_PREFIX": None,
    },
}
APP_REQUIRED_ENTRY_POINTS = {name for name, req in REQUIRED.items() if "ION_EVENTS_TOPIC" in req}
# Entry points that verify learner tokens: they need the JWT secret (or a JWKS URL).
VERIFIES_TOKENS = {"chat", "persona_route"}
PUBLIC_HTTP = {"chat", "persona_route"}


# ------------------------------------------------------------------------------------------
# Loading and resolving HCL
# ------------------------------------------------------------------------------------------


def _unquote(value: Any) -> Any:
    """python-hcl2 keeps string literals quoted ('"gcp"'); strip that, recursively."""
    if isinstance(value, str):
        if len(value) >= 2 and value[0] == value[-1] == '"':
            return value[1:-1]
        return value
    if isinstance(value, list):
        return [_unquote(item) for item in value]
    if isinstance(value, dict):
        return {
            _unquote(key): _unquote(item)
            for key, item in value.items()
            if not (isinstance(key, str) and key.startswith("__"))
        }
    return value


@cache
def load_file(path: Path) -> dict[str, list[Any]]:
    with path.open(encoding="utf-8") as handle:
        parsed = hcl2.load(handle)
    return {kind: _unquote(blocks) for kind, blocks in parsed.items() if not kind.startswith("__")}


@cache
def load_dir(directory: Path) -> dict[str, list[Any]]:
    """Every *.tf file of the directory, merged by block kind (as Terraform reads them)."""
    merged: dict[str, list[Any]] = {}
    for path in sorted(directory.glob("*.tf")):
        for kind, blocks in load_file(path).items():
            merged.setdefault(kind, []).extend(blocks)
    return merged


def resources(kind: str, directory: Path = TF) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for block in load_dir(directory).get("resource", []):
        for name, body in block.get(kind, {}).items():
            found[name] = body
    return found


def modules() -> dict[str, dict[str, Any]]:
    return {name: body for block in load_dir(TF).get("module", []) for name, body in block.items()}


def variables(directory: Path = TF) -> dict[str, dict[str, Any]]:
    return {
        name: body
        for block in load_dir(directory).get("variable", [])
        for name, body in block.items()
    }


def locals_() -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for block in load_dir(TF).get("locals", []):
        merged.update(block)
    return merged


_REF = re.compile(r"^\$\{([A-Za-z0-9_.\[\]\"-]+)\}$")


def resolve(value: Any) -> Any:
    """The literal a Terraform expression stands for, or None when it is only known at apply.

    Follows `var.x` (its default), `local.x`, `local.x.y` and `TYPE.NAME.name` of resources
    declared in the root module; anything else (function calls, ids) is None.
    """
    if not isinstance(value, str):
        return value
    match = _REF.match(value)
    if match is None:
        return None if "${" in value else value
    # x["key"] is x.key for the lookup below.
    parts = re.sub(r'\["([\w-]+)"\]', r".\1", match.group(1)).split(".")
    if parts[0] == "var" and len(parts) == 2:
        return resolve(variables().get(parts[1], {}).get("default"))
    if parts[0] == "local" and len(parts) >= 2:
        current: Any = locals_().get(parts[1])
        for part in parts[2:]:
            current = current.get(part) if isinstance(current, dict) else None
        return resolve(current)
    if len(parts) == 3 and parts[2] == "name" and parts[0].startswith("google_"):
        return resolve(resources(parts[0]).get(parts[1], {}).get("name"))
    return None


def references(value: Any) -> str:
    match = _REF.match(value) if isinstance(value, str) else None
    return match.group(1) if match else ""


def for_each_of(body: Mapping[str, Any]) -> dict[str, Any]:
    """What a block's for_each iterates, by key: a literal map, a local, or the instances of
    another resource (each.value is then that instance, as a reference)."""
    expr = body["for_each"]
    if isinstance(expr, dict):
        return expr
    merged = re.fullmatch(r"\$\{merge\((local\.\w+(?:, local\.\w+)*)\)\}", expr)
    if merged:  # merge() of literal locals
        return {
            key: value
            for name in merged.group(1).split(", ")
            for key, value in for_each_of({"for_each": f"${{{name}}}"}).items()
        }
    ref = references(expr)
    if ref in EXPANDED_LOCALS:
        return EXPANDED_LOCALS[ref]()
    if ref.startswith("local."):
        found = locals_()[ref.removeprefix("local.")]
        assert isinstance(found, dict), ref
        return found
    kind, name = ref.split(".")
    return {key: f'${{{ref}["{key}"]}}' for key in for_each_of(resources(kind)[name])}


# Locals written as `for` expressions, which python-hcl2 leaves as text: each is pinned to
# its exact text here and expanded the way Terraform would, from the variables' defaults.
HTTP_DEPLOYMENTS = (
    "${{for pair in setproduct(keys(local.http_functions), var.http_regions) : "
    '"${pair[0]}-${pair[1]}" => merge(local.http_functions[pair[0]], '
    "{entry_point = pair[0], region = pair[1]})}}"
)
HEALTH_PATHS = '${{for key in keys(local.http_functions) : key => "/_health/${key}"}}'


def http_regions() -> list[str]:
    regions = variables()["http_regions"]["default"]
    assert isinstance(regions, list)
    return [str(region) for region in regions]


def _http_deployments() -> dict[str, Any]:
    assert locals_()["http_deployments"] == HTTP_DEPLOYMENTS
    return {
        f"{entry_point}-{region}": {**spec, "entry_point": entry_point, "region": region}
        for entry_point, spec in locals_()["http_functions"].items()
        for region in http_regions()
    }


def _health_paths() -> dict[str, Any]:
    assert locals_()["health_paths"] == HEALTH_PATHS
    return {key: f"/_health/{key}" for key in locals_()["http_functions"]}


EXPANDED_LOCALS = {
    "local.http_deployments": _http_deployments,
    "local.health_paths": _health_paths,
}


_EACH = re.compile(r"\$\{each\.(?:(key)|value\.(\w+)((?:\.\w+)*))\}")


def instantiate(expr: Any, key: str, value: Any) -> Any:
    """`expr` as written for one for_each instance: each.key and each.value.<attr> replaced."""
    if isinstance(expr, dict):
        return {k: instantiate(v, key, value) for k, v in expr.items()}
    if isinstance(expr, list):
        return [instantiate(item, key, value) for item in expr]
    if not isinstance(expr, str):
        return expr

    def substitute(match: re.Match[str]) -> Any:
        if match.group(1):
            return key
        if isinstance(value, dict):
            item, path = value[match.group(2)], match.group(3)
        else:  # each.value is another resource's instance: .<attr> is its attribute
            item, path = value, f".{match.group(2)}{match.group(3)}"
        ref = references(item)
        if ref:  # a reference: keep it one, with the attribute path after it
            return f"${{{ref}{path}}}"
        assert not path, match.group(0)
        return item

    whole = _EACH.fullmatch(expr)
    if whole:
        return substitute(whole)
    if expr == "${each.value}" and not isinstance(value, dict):
        return value
    expr = expr.replace("[each.key]", f'["{key}"]')
    if isinstance(value, dict):  # x[each.value.attr] with a literal attribute
        expr = re.sub(
            r"\[each\.value\.(\w+)\]",
            lambda match: (
                f'["{value[match.group(1)]}"]'
                if isinstance(value.get(match.group(1)), str)
                else match.group(0)
            ),
            expr,
        )
    return _EACH.sub(lambda match: str(substitute(match)), expr)


def instances(kind: str, name: str) -> dict[str, dict[str, Any]]:
    """The instances of a for_each resource, by key, each as written for that key."""
    body = resources(kind)[name]
    return {key: instantiate(body, key, value) for key, value in for_each_of(body).items()}


# ------------------------------------------------------------------------------------------
# The deployed functions
# ------------------------------------------------------------------------------------------


def _load_package_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ion_package_script", ROOT / "scripts/package.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


PACKAGE = _load_package_script()
ENTRY_POINTS = [
    (function, entry_point, signature)
    for function, spec in PACKAGE.FUNCTIONS.items()
    for entry_point, signature in spec.entry_points.items()
]


# How the function module blocks build the function's environment: the common settings,
# the deployer's extra_environment, then the function's own (each.value.environment); the
# public APIs then add the Gemini mode and their own region.
MERGED_ENVIRONMENT = "${merge(local.common_env, var.extra_environment, each.value.environment)}"
HTTP_ENVIRONMENT = (
    "${merge(local.common_env, var.extra_environment, each.value.environment, "
    "local.gemini_environment, {ION_GCP_LOCATION = each.value.region}, "
    'local.gunicorn_environment["ENTRY_POINT"])}'
)
# gunicorn inside a public API (functions-framework reads WORKERS and THREADS): one worker
# per vCPU, one thread per request Cloud Run may send at once.
GUNICORN_ENVIRONMENT = (
    "${{for entry_point, function in local.http_functions : entry_point => "
    "{WORKERS = function.cpu, THREADS = tostring(function.concurrency)}}}"
)
GEMINI_ENVIRONMENT = (
    '${var.gemini_auth == "vertex" ? {ION_GEMINI_VERTEX = "true"} : {ION_GEMINI_VERTEX = "false"}}'
)
# The secrets of the public APIs: the JWT secret at two pinned versions, the Gemini key in
# API-key mode only.
HTTP_SECRETS = "${merge(local.jwt_secrets, local.gemini_secrets)}"
JWT_SECRET_REF = "${google_secret_manager_secret.jwt.secret_id}"
GEMINI_SECRET_REF = "${google_secret_manager_secret.gemini_api_key.secret_id}"
JWT_SECRETS = (
    "${merge({ION_JWT_SECRET = {secret = google_secret_manager_secret.jwt.secret_id, "
    "version = tostring(var.jwt_secret_version)}}, var.jwt_secret_version > 1 ? "
    "{ION_JWT_PREVIOUS_SECRET = {secret = google_secret_manager_secret.jwt.secret_id, "
    "version = tostring(var.jwt_secret_version - 1)}} : {})}"
)
GEMINI_SECRETS = (
    '${var.gemini_auth == "api_key" ? {ION_GEMINI_API_KEY = {secret = '
    "google_secret_manager_secret.gemini_api_key.secret_id, "
    "version = tostring(var.gemini_api_key_version)}} : {}}"
)


def gemini_auth() -> str:
    return str(variables()["gemini_auth"]["default"])


def secrets_of(
    module: Mapping[str, Any], *, auth: str | None = None, jwt_version: int | None = None
) -> dict[str, dict[str, str]]:
    """A module instance's secret environment: name -> {secret, version}, as Terraform
    computes it for a Gemini mode and a JWT secret version (default: the variables')."""
    given = module.get("secret_environment", {})
    if given != HTTP_SECRETS:
        return dict(given)
    assert locals_()["jwt_secrets"] == JWT_SECRETS
    assert locals_()["gemini_secrets"] == GEMINI_SECRETS
    auth = auth or gemini_auth()
    version = jwt_version or int(variables()["jwt_secret_version"]["default"])
    found = {"ION_JWT_SECRET": {"secret": JWT_SECRET_REF, "version": str(version)}}
    if version > 1:
        found["ION_JWT_PREVIOUS_SECRET"] = {"secret": JWT_SECRET_REF, "version": str(version - 1)}
    if auth == "api_key":
        key_version = str(variables()["gemini_api_key_version"]["default"])
        found["ION_GEMINI_API_KEY"] = {"secret": GEMINI_SECRET_REF, "version": key_version}
    return found


def function_instances() -> dict[tuple[str, str], dict[str, Any]]:
    """Every deployed function by (module block, key), as written for that key."""
    found = {}
    for block, body in modules().items():
        assert body["source"] == "./modules/function", block
        for key, value in for_each_of(body).items():
            found[block, key] = {**instantiate(body, key, value), "each.value": value}
    return found


def _without_region(instance: Mapping[str, Any]) -> dict[str, Any]:
    return {
        key: value
        for key, value in instance.items()
        if key not in {"region", "each.value"} and "each.value.region" not in str(value)
    }


def deployed() -> dict[str, dict[str, Any]]:
    """Module instances by entry point: the primary region's, for the public APIs, which
    are deployed alike in every region (checked here)."""
    found: dict[str, dict[str, Any]] = {}
    for instance in function_instances().values():
        entry_point = instance["entry_point"]
        if entry_point in found:
            assert _without_region(instance) == _without_region(found[entry_point])
            if instance["each.value"].get("region") != http_regions()[0]:
                continue
        found[entry_point] = instance
    return found


def module_instance(reference: str) -> dict[str, Any]:
    """The module instance a `module.BLOCK["KEY"].url` reference names."""
    found = re.fullmatch(r'\$\{module\.(\w+)\["(\w+)"\]\.url\}', reference)
    assert found, reference
    return function_instances()[found.group(1), found.group(2)]


def zip_of(module: Mapping[str, Any]) -> str:
    found = re.search(r"/([a-z_]+)\.zip$", module["source_zip"])
    assert found, f"source_zip {module['source_zip']!r} is not a dist/<function>.zip"
    return found.group(1)


def environment(entry_point: str) -> dict[str, Any]:
    """The function's env map as Terraform writes it: common env, then its own."""
    module = deployed()[entry_point]
    own = {**locals_()["common_env"], **module["each.value"]["environment"]}
    if module["environment"] == MERGED_ENVIRONMENT:
        return own
    assert module["environment"] == HTTP_ENVIRONMENT.replace("ENTRY_POINT", entry_point)
    assert locals_()["gemini_environment"] == GEMINI_ENVIRONMENT
    vertex = "true" if gemini_auth() == "vertex" else "false"
    return {
        **own,
        "ION_GEMINI_VERTEX": vertex,
        "ION_GCP_LOCATION": module["each.value"]["region"],
        **gunicorn_environment(entry_point),
    }


def gunicorn_environment(entry_point: str) -> dict[str, str]:
    """WORKERS and THREADS of a public API, with the variables at their defaults."""
    assert locals_()["gunicorn_environment"] == GUNICORN_ENVIRONMENT
    spec = deployed()[entry_point]["each.value"]
    return {"WORKERS": str(resolve(spec["cpu"])), "THREADS": str(resolve(spec["concurrency"]))}


def provided(entry_point: str) -> dict[str, Any]:
    return {**environment(entry_point), **secrets_of(deployed()[entry_point])}


def setting_names() -> set[str]:
    return {f"ION_{name.upper()}" for name in Settings.model_fields}


def iter_env_keys() -> Iterator[tuple[str, str]]:
    for key in locals_()["common_env"]:
        yield "local.common_env", key
    for entry_point, module in deployed().items():
        for key in module["each.value"]["environment"]:
            yield f"function {entry_point} environment", key
        for key in secrets_of(module, auth="api_key", jwt_version=2):
            yield f"module {entry_point} secret_environment", key
    yield "local.gemini_environment", "ION_GEMINI_VERTEX"
    for path in sorted((TF / "examples").glob("*.tfvars")):
        with path.open(encoding="utf-8") as handle:
            tfvars = _unquote(hcl2.load(handle))
        for key in tfvars.get("extra_environment", {}):
            yield path.name, key


# ------------------------------------------------------------------------------------------
# Functions, entry points, packaging
# ------------------------------------------------------------------------------------------


def test_every_entry_point_is_deployed_once_per_region_from_its_own_archive() -> None:
    deployments = [
        (zip_of(body), body["entry_point"], body["region"])
        for body in function_instances().values()
    ]
    expected = [
        (function, entry_point, region)
        for function, entry_point, _ in ENTRY_POINTS
        for region in (http_regions() if entry_point in PUBLIC_HTTP else ["${var.region}"])
    ]
    assert sorted(deployments) == sorted(expected)
    assert len(http_regions()) >= 2


@pytest.mark.parametrize(("function", "entry_point", "signature"), ENTRY_POINTS)
def test_entry_point_is_a_top_level_function_of_main_py(
    function: str, entry_point: str, signature: str
) -> None:
    main_py = ROOT / PACKAGE.FUNCTIONS[function].source / "main.py"
    assert main_py.is_file(), f"{main_py.relative_to(ROOT)} is missing"
    tree = ast.parse(main_py.read_text(encoding="utf-8"))
    found = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    assert entry_point in found, f"no top-level def {entry_point} in {main_py.relative_to(ROOT)}"
    # The decorator tells the framework the signature, on GCP as in the packaging test.
    decorator = {"http": "http", "cloudevent": "cloud_event"}[signature]
    names = {ast.unparse(d) for d in found[entry_point].decorator_list}
    assert f"functions_framework.{decorator}" in names


# ------------------------------------------------------------------------------------------
# Settings
# ------------------------------------------------------------------------------------------


#: Environment variables for the runtime itself (glibc), not settings of ours.
RUNTIME_ENVIRONMENT = frozenset({"MALLOC_ARENA_MAX"})


def test_every_ion_variable_in_terraform_is_a_real_setting() -> None:
    unknown = [
        (where, key)
        for where, key in iter_env_keys()
        if key not in setting_names() and key not in RUNTIME_ENVIRONMENT
    ]
    assert unknown == []


@pytest.mark.parametrize("entry_point", sorted(REQUIRED))
def test_required_settings_are_provided(entry_point: str) -> None:
    given = provided(entry_point)
    required = {**COMMON_REQUIRED, **REQUIRED[entry_point]}
    missing = sorted(key for key in required if key not in given)
    assert missing == []
    wrong = {
        key: resolve(given[key])
        for key, expected in required.items()
        if expected is not None and resolve(given[key]) != expected
    }
    assert wrong == {}


@pytest.mark.parametrize("entry_point", sorted(VERIFIES_TOKENS))
def test_token_verifiers_get_a_jwt_secret_or_a_jwks_url(entry_point: str) -> None:
    given = provided(entry_point)
    secret = given.get("ION_JWT_SECRET", {})
    assert secret.get("secret") == JWT_SECRET_REF or "ION_JWKS_URL" in given


@pytest.mark.parametrize("entry_point", sorted(VERIFIES_TOKENS))
def test_jwt_secret_is_pinned_with_the_previous_version_verifying(entry_point: str) -> None:
    """The two-secret window: version N signs and verifies, N-1 still verifies."""
    module = deployed()[entry_point]
    assert secrets_of(module, jwt_version=1) == {
        "ION_JWT_SECRET": {"secret": JWT_SECRET_REF, "version": "1"}
    }
    rotated = secrets_of(module, jwt_version=5)
    assert rotated["ION_JWT_SECRET"] == {"secret": JWT_SECRET_REF, "version": "5"}
    assert rotated["ION_JWT_PREVIOUS_SECRET"] == {"secret": JWT_SECRET_REF, "version": "4"}
    # The names the settings read.
    assert {"jwt_secret", "jwt_previous_secret"} <= set(Settings.model_fields)


def test_secret_versions_are_pinned_never_latest() -> None:
    main = (MODULE / "main.tf").read_text(encoding="utf-8")
    assert '"latest"' not in main
    (block,) = [b for b in load_dir(MODULE)["resource"] if "google_cloudfunctions2_function" in b]
    service = block["google_cloudfunctions2_function"]["this"]["service_config"][0]
    secret = service["dynamic"][0]["secret_environment_variables"]["content"][0]
    assert secret["version"] == "${secret_environment_variables.value.version}"
    validation = variables(MODULE)["secret_environment"]["validation"][0]
    assert "[1-9][0-9]*" in validation["condition"]


def test_vertex_ai_is_the_default_and_the_api_key_an_option() -> None:
    assert gemini_auth() == "vertex"
    assert "vertex" in variables()["gemini_auth"]["validation"][0]["condition"]
    assert Settings.model_fields["gemini_vertex"].annotation is bool
    for entry_point in ("chat", "persona_route"):
        assert resolve(environment(entry_point)["ION_GEMINI_VERTEX"]) == "true"
        assert "ION_GEMINI_API_KEY" not in secrets_of(deployed()[entry_point])
        key = secrets_of(deployed()[entry_point], auth="api_key")["ION_GEMINI_API_KEY"]
        assert key["secret"] == GEMINI_SECRET_REF


def test_vertex_callers_get_aiplatform_user_and_key_readers_only_in_api_key_mode() -> None:
    vertex = resources("google_project_iam_member")["vertex_users"]
    assert vertex["role"] == "roles/aiplatform.user"
    assert vertex["for_each"] == '${var.gemini_auth == "vertex" ? local.gemini_callers : {}}'
    assert vertex["member"] == "serviceAccount:${each.value}"
    readers = resources("google_secret_manager_secret_iam_member")["gemini_accessor"]
    assert readers["for_each"] == '${var.gemini_auth == "api_key" ? local.gemini_callers : {}}'
    callers = locals_()["gemini_callers"]
    assert set(callers) == {"chat", "persona_route"}
    for key, email in callers.items():
        assert email == f'${{google_service_account.function["{key}"].email}}'
    assert "aiplatform.googleapis.com" in resources("google_project_service")["apis"]["for_each"]


def test_secret_ids_match_the_secrets_port_names() -> None:
    # The secrets port reads `<prefix><name>`; Terraform must create exactly those ids.
    prefix = resolve("${var.secret_prefix}")
    assert prefix == Settings.model_fields["secret_prefix"].default
    ids = {body["secret_id"] for body in resources("google_secret_manager_secret").values()}
    assert ids == {"${var.secret_prefix}jwt-secret", "${var.secret_prefix}gemini-api-key"}


@pytest.mark.parametrize("entry_point", sorted(REQUIRED))
def test_literal_settings_are_valid_for_the_settings_model(
    entry_point: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in setting_names():
        monkeypatch.delenv(key, raising=False)
    values = {key: resolve(value) for key, value in environment(entry_point).items()}
    for key, value in values.items():
        if value is not None:
            monkeypatch.setenv(key, str(value))
    settings = Settings(_env_file=None)
    assert settings.backend == "gcp"


def test_the_crisis_operating_point_is_typed_and_limited_to_the_calibrated_ones() -> None:
    variable = variables()["safety_everyday_budget"]
    assert variable["default"] == Settings.model_fields["safety_everyday_budget"].default
    condition = variable["validation"][0]["condition"]
    listed = re.fullmatch(r"\$\{contains\(\[(.*)\], var\.safety_everyday_budget\)\}", condition)
    assert listed is not None, condition
    assert tuple(float(v) for v in listed.group(1).split(",")) == OPERATING_POINTS
    assert locals_()["common_env"]["ION_SAFETY_EVERYDAY_BUDGET"] == "${var.safety_everyday_budget}"


def test_functions_keep_two_malloc_arenas() -> None:
    # Measured: the leak check's heap growth fell from +1.4 to +0.4 MB over 5,000 requests.
    assert locals_()["common_env"]["MALLOC_ARENA_MAX"] == "2"


def test_example_tfvars_declare_only_known_variables_and_all_required_ones() -> None:
    declared = variables()
    required = {name for name, body in declared.items() if "default" not in body}
    for path in sorted((TF / "examples").glob("*.tfvars")):
        with path.open(encoding="utf-8") as handle:
            given = set(_unquote(hcl2.load(handle)))
        assert given - set(declared) == set(), path.name
        assert required - given == set(), path.name


# ------------------------------------------------------------------------------------------
# Dependencies shipped vs configuration
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("entry_point", sorted(REQUIRED))
def test_each_archive_ships_what_its_configuration_uses(entry_point: str) -> None:
    spec = PACKAGE.FUNCTIONS[zip_of(deployed()[entry_point])]
    ships = set(spec.extras)
    env = {key: resolve(value) for key, value in environment(entry_point).items()}
    needs = {"google-cloud-firestore"} if env.get("ION_BACKEND") == "gcp" else set()
    if env.get("ION_LLM_PROVIDER") == "gemini" or env.get("ION_ROUTING_JUDGE") == "gemini":
        needs.add("google-genai")
    if env.get("ION_SECRETS_BACKEND") == "secretmanager":
        needs.add("google-cloud-secret-manager")
    if entry_point in APP_REQUIRED_ENTRY_POINTS:
        needs.add("google-cloud-pubsub")  # the app's event publisher
    assert needs - ships == set()


def test_no_archive_ships_the_gemini_sdk_unless_a_function_from_it_uses_gemini() -> None:
    for function, spec in PACKAGE.FUNCTIONS.items():
        uses = {
            resolve(environment(entry_point).get(name))
            for entry_point in spec.entry_points
            for name in ("ION_LLM_PROVIDER", "ION_ROUTING_JUDGE")
        }
        assert ("google-genai" in spec.extras) == ("gemini" in uses), function


@pytest.mark.parametrize("entry_point", ["chat", "persona_route"])
def test_the_routing_judge_is_on_with_gemini_credentials(entry_point: str) -> None:
    assert resolve(environment(entry_point)["ION_ROUTING_JUDGE"]) == "gemini"
    assert entry_point in locals_()["gemini_callers"]


# ------------------------------------------------------------------------------------------
# Topics and subscriptions
# ------------------------------------------------------------------------------------------


def test_events_topic_given_to_the_functions_is_a_declared_topic() -> None:
    topic_ref = locals_()["common_env"]["ION_EVENTS_TOPIC"]
    assert references(topic_ref) == "google_pubsub_topic.events.name"
    declared = {resolve(body["name"]) for body in resources("google_pubsub_topic").values()}
    assert resolve(topic_ref) in declared
    # The code's default is the same topic, so a missing variable cannot split publishers.
    assert resolve(topic_ref) == Settings.model_fields["events_topic"].default


def test_chat_may_publish_to_the_events_topic() -> None:
    grants = resources("google_pubsub_topic_iam_member")
    assert grants["chat_publisher"]["topic"] == "${google_pubsub_topic.events.id}"
    assert grants["chat_publisher"]["role"] == "roles/pubsub.publisher"


def pushes() -> dict[str, dict[str, Any]]:
    """The push subscriptions, by key."""
    return instances("google_pubsub_subscription", "push")


def test_persona_events_is_pushed_the_events_topic() -> None:
    sub = pushes()["persona_events"]
    assert sub["topic"] == "${google_pubsub_topic.events.id}"
    endpoint = sub["push_config"][0]["push_endpoint"]
    assert endpoint.endswith("/topics/${google_pubsub_topic.events.name}")
    target = module_instance(endpoint.split("/")[0])
    assert target["entry_point"] == "persona_events"


def test_scheduler_publishes_to_the_topic_backup_is_pushed_from() -> None:
    job = resources("google_cloud_scheduler_job")["backup"]
    topic = job["pubsub_target"][0]["topic_name"]
    assert re.fullmatch(r"\$\{google_pubsub_topic\.(\w+)\.id\}", topic)
    endpoints = [
        body["push_config"][0]["push_endpoint"].split("/")[0]
        for body in pushes().values()
        if body["topic"] == topic
    ]
    assert [module_instance(endpoint)["entry_point"] for endpoint in endpoints] == ["backup"]


def test_every_event_function_is_pushed_and_only_they_are() -> None:
    pushed = {
        module_instance(b["push_config"][0]["push_endpoint"].split("/")[0])["entry_point"]
        for b in pushes().values()
    }
    internal = {ep for ep, body in deployed().items() if body["ingress"] == "ALLOW_INTERNAL_ONLY"}
    assert pushed == internal == {"persona_events", "backup"}
    # Keyed alike: a push subscription's key is the function it pushes to.
    for key, body in pushes().items():
        assert body["push_config"][0]["push_endpoint"].startswith(
            f'${{module.event_function["{key}"].url}}/'
        )
        audience = body["push_config"][0]["oidc_token"][0]["audience"]
        assert audience == f'${{module.event_function["{key}"].url}}', key


def test_every_push_subscription_has_a_dead_letter_topic_and_a_retry_policy() -> None:
    dead_letter_topics = instances("google_pubsub_topic", "dead_letter")
    holds = instances("google_pubsub_subscription", "dead_letter_hold")
    for name, body in pushes().items():
        dead_letter = body["dead_letter_policy"][0]["dead_letter_topic"]
        target = re.fullmatch(r'\$\{google_pubsub_topic\.dead_letter\["(\w+)"\]\.id\}', dead_letter)
        assert target and target.group(1) == name and name in dead_letter_topics, name
        assert dead_letter != body["topic"], name
        assert body["retry_policy"][0]["minimum_backoff"], name
        assert body["dead_letter_policy"][0]["max_delivery_attempts"], name
        # Dead letters are kept somewhere: a subscription holds each dead-letter topic.
        assert [h["topic"] for h in holds.values() if h["topic"] == dead_letter] == [dead_letter]
    # Pub/Sub may forward to every dead-letter topic and acknowledge on every push.
    publish = instances("google_pubsub_topic_iam_member", "dead_letter_publisher")
    acknowledge = instances("google_pubsub_subscription_iam_member", "dead_letter_subscriber")
    assert set(publish) == set(acknowledge) == set(pushes())
    for name in pushes():
        assert publish[name]["topic"] == f'${{google_pubsub_topic.dead_letter["{name}"].id}}'
        assert (
            acknowledge[name]["subscription"]
            == f'${{google_pubsub_subscription.push["{name}"].id}}'
        )
        assert publish[name]["member"] == acknowledge[name]["member"] == "${local.pubsub_agent}"


# ------------------------------------------------------------------------------------------
# Exposure and identities
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("entry_point", sorted(REQUIRED))
def test_only_the_public_apis_are_reachable_from_the_internet(entry_point: str) -> None:
    module = deployed()[entry_point]
    if entry_point in PUBLIC_HTTP:
        # Public only through the load balancer (edge.tf): run.app refuses the internet.
        assert (module["ingress"], module.get("public")) == ("ALLOW_INTERNAL_AND_GCLB", True)
    else:
        assert (module["ingress"], module.get("public", False)) == ("ALLOW_INTERNAL_ONLY", False)


def test_each_function_runs_as_its_own_service_account() -> None:
    declared = instances("google_service_account", "function")
    for entry_point, body in deployed().items():
        account = body["service_account_email"]
        found = re.fullmatch(r'\$\{google_service_account\.function\["(\w+)"\]\.email\}', account)
        assert found and found.group(1) == entry_point and entry_point in declared
        # The account is named like the function.
        assert declared[entry_point]["account_id"] == body["name"]
    assert set(declared) == set(deployed())


def test_every_iam_grant_is_commented_with_why() -> None:
    uncommented = []
    for path in sorted(TF.rglob("*.tf")):
        lines = path.read_text(encoding="utf-8").splitlines()
        for index, line in enumerate(lines):
            if re.match(r'resource "google_\w+_iam_member"', line):
                above = lines[index - 1].strip() if index else ""
                if not above.startswith("#"):
                    uncommented.append(f"{path.relative_to(ROOT)}:{index + 1}")
    assert uncommented == []


def test_no_primitive_roles() -> None:
    roles = [
        body.get("role")
        for kind in ("google_project_iam_member", "google_storage_bucket_iam_member")
        for body in resources(kind).values()
    ]
    assert not {"roles/owner", "roles/editor", "roles/viewer"} & set(roles)


# ------------------------------------------------------------------------------------------
# Firestore vs docs/data-model.md
# ------------------------------------------------------------------------------------------


def _data_model() -> str:
    return (ROOT / "docs" / "data-model.md").read_text(encoding="utf-8")


def _indexes_json() -> dict[str, Any]:
    for block in re.findall(r"```json\n(.*?)```", _data_model(), flags=re.S):
        data = json.loads(block)
        if isinstance(data, dict) and "indexes" in data:
            return data
    raise AssertionError("docs/data-model.md has no firestore.indexes.json block")


def test_composite_indexes_match_the_data_model() -> None:
    documented = sorted(
        (
            index["collectionGroup"],
            index["queryScope"],
            tuple((f["fieldPath"], f["order"]) for f in index["fields"]),
        )
        for index in _indexes_json()["indexes"]
    )
    declared = sorted(
        (
            body["collection"],
            body["query_scope"],
            tuple((f["field_path"], f["order"]) for f in body["fields"]),
        )
        for body in resources("google_firestore_index").values()
    )
    assert declared == documented


def test_index_exemptions_match_the_data_model() -> None:
    documented = sorted(
        (o["collectionGroup"], o["fieldPath"])
        for o in _indexes_json().get("fieldOverrides", [])
        if o.get("indexes") == [] and not o.get("ttl")
    )
    exemptions = resources("google_firestore_field")["index_exemptions"]["for_each"]
    declared = sorted((v["collection"], v["field"]) for v in exemptions.values())
    assert declared == documented


def test_ttl_policies_match_the_data_model() -> None:
    section = _data_model().split("### TTL", 1)[1].split("\n### ", 1)[0]
    documented = sorted(
        (collection, field)
        for collection, field in re.findall(r"^\|\s*`([\w-]+)`\s*\|\s*`(\w+)`\s*\|", section, re.M)
    )
    ttl = resources("google_firestore_field")["ttl"]["for_each"]
    declared = sorted((v["collection"], v["field"]) for v in ttl.values())
    assert declared == documented


# ------------------------------------------------------------------------------------------
# Layout and hygiene
# ------------------------------------------------------------------------------------------


# Where each kind of top-level block lives, in the root and in every module.
HOME = {"variable": "variables.tf", "output": "outputs.tf", "terraform": "versions.tf"}
ROOT_MAX_LINES = 400


@pytest.mark.parametrize("directory", [TF, MODULE], ids=["root", "modules/function"])
def test_file_layout(directory: Path) -> None:
    files = {path.name: path for path in directory.glob("*.tf")}
    # These files at least; the root adds one file per concern instead of a main.tf.
    expected = set(HOME.values()) | ({"main.tf"} if directory == MODULE else set())
    assert expected <= set(files)
    for name, path in files.items():
        for kind in load_file(path):
            assert HOME.get(kind, name) == name, f"{kind} block in {name}"


def test_root_has_one_file_per_concern() -> None:
    files = sorted(TF.glob("*.tf"))
    assert "main.tf" not in {path.name for path in files}
    # variables.tf is the whole interface, one concern however long it grows.
    long = {
        path.name: lines
        for path in files
        if path.name != "variables.tf"
        and (lines := len(path.read_text(encoding="utf-8").splitlines())) > ROOT_MAX_LINES
    }
    assert long == {}


def _address_keys(address: str) -> tuple[str, str, str | None]:
    found = re.fullmatch(r'\$\{(module|\w+)\.(\w+)(?:\["([\w-]+)"\])?\}', address)
    assert found, address
    return found.group(1), found.group(2), found.group(3)


def _declared(address: str) -> bool:
    kind, name, key = _address_keys(address)
    blocks = modules() if kind == "module" else resources(kind)
    body = blocks.get(name)
    if key is None:
        return body is not None and "for_each" not in body
    return body is not None and key in for_each_of(body)


def test_moved_blocks_lead_from_gone_addresses_to_declared_ones() -> None:
    moves = load_dir(TF).get("moved", [])
    assert moves
    sources = {move["from"] for move in moves}
    for move in moves:
        assert not _declared(move["from"]), move["from"]
        # A chain of moves (a -> b, b -> c) is followed to its end.
        target, seen = move["to"], set()
        while not _declared(target):
            assert target in sources and target not in seen, move["to"]
            seen.add(target)
            (target,) = [m["to"] for m in moves if m["from"] == target]


def test_every_public_api_moved_to_its_primary_region_instance() -> None:
    moves = {m["from"]: m["to"] for m in load_dir(TF).get("moved", [])}
    assert http_regions()[0] == variables()["region"]["default"]
    for entry_point in PUBLIC_HTTP:
        old = f'${{module.http_function["{entry_point}"]}}'
        assert moves[old] == f'${{module.http_function["{entry_point}-{http_regions()[0]}"]}}'


@pytest.mark.parametrize("directory", [TF, MODULE], ids=["root", "modules/function"])
def test_every_variable_is_typed_and_described(directory: Path) -> None:
    loose = [
        name
        for name, body in variables(directory).items()
        if not body.get("type") or not body.get("description")
    ]
    assert loose == []


@pytest.mark.parametrize("directory", [TF, MODULE], ids=["root", "modules/function"])
def test_every_output_is_described(directory: Path) -> None:
    outputs = {n: b for block in load_dir(directory).get("output", []) for n, b in block.items()}
    assert outputs and all(body.get("description") for body in outputs.values())


@pytest.mark.parametrize("directory", [TF, MODULE], ids=["root", "modules/function"])
def test_provider_versions_are_pinned_exactly(directory: Path) -> None:
    (terraform,) = load_dir(directory)["terraform"]
    providers = terraform["required_providers"][0]
    assert providers, "no required_providers"
    for name, spec in providers.items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", spec["version"]), name


def test_root_and_module_pin_the_same_provider_version() -> None:
    def version(directory: Path) -> str:
        (terraform,) = load_dir(directory)["terraform"]
        return str(terraform["required_providers"][0]["google"]["version"])

    assert version(TF) == version(MODULE)


def test_function_outputs_give_the_urls() -> None:
    outputs = {n: b for block in load_dir(TF).get("output", []) for n, b in block.items()}
    assert outputs["api_url"]["value"] == "https://${var.edge_domains[0]}"
    assert outputs["edge_ip"]["value"] == "${google_compute_global_address.edge.address}"
    assert "module.http_function" in outputs["http_function_urls"]["value"]


def test_crisis_detections_page_a_human() -> None:
    """The chat function's crisis WARNING feeds a log metric whose alert notifies people."""
    chat_source = (ROOT / "shared" / "ion" / "services" / "chat.py").read_text(encoding="utf-8")
    assert '"crisis detected: conversation=' in chat_source
    metric = instances("google_logging_metric", "counter")["crisis_detected"]
    assert 'jsonPayload.message=~"^crisis detected:"' in metric["filter"]
    assert "${local.function_names.chat}" in metric["filter"]
    alert = instances("google_monitoring_alert_policy", "log_metric")["crisis_detected"]
    condition = alert["conditions"][0]["condition_threshold"][0]
    assert '${google_logging_metric.counter["crisis_detected"].name}' in condition["filter"]
    assert condition["threshold_value"] == 0 and condition["comparison"] == "COMPARISON_GT"
    assert alert["notification_channels"] == "${local.notification_channels}"
    assert "docs/operations.md" in alert["documentation"][0]["content"]
    assert alert["display_name"] == "ION: learner in crisis"


def test_every_log_alert_watches_a_declared_metric_and_hold() -> None:
    counters = for_each_of(resources("google_logging_metric")["counter"])
    others = set(resources("google_logging_metric")) - {"counter"}
    holds = for_each_of(resources("google_pubsub_subscription")["dead_letter_hold"])
    for name, alert in for_each_of(
        resources("google_monitoring_alert_policy")["log_metric"]
    ).items():
        found = re.search(
            r'google_logging_metric\.(?:counter\["(\w+)"\]|(\w+))\.name', alert["filter"]
        )
        assert found, name
        assert found.group(1) in counters if found.group(1) else found.group(2) in others, name
        if alert["dead_letter_hold"] is not None:
            hold = re.fullmatch(
                r'\$\{google_pubsub_subscription\.dead_letter_hold\["(\w+)"\]\.name\}',
                alert["dead_letter_hold"]["subscription"],
            )
            assert hold and hold.group(1) in holds, name


def test_only_the_safety_reviewers_may_read_conversations() -> None:
    grant = resources("google_project_iam_member")["safety_reviewers"]
    assert grant["role"] == "roles/datastore.viewer"
    assert grant["for_each"] == "${toset(var.safety_reviewers)}"
    assert variables()["safety_reviewers"]["default"] == []


# ------------------------------------------------------------------------------------------
# Scaling: instances, concurrency, CPU and gunicorn (docs/performance.md)
# ------------------------------------------------------------------------------------------

# The module input -> the service_config argument of google_cloudfunctions2_function.
SCALING_ARGUMENTS = {
    "min_instances": "min_instance_count",
    "concurrency": "max_instance_request_concurrency",
    "cpu": "available_cpu",
}
SCALING_VARIABLES = {
    "chat": {"min_instances": "chat_min_instances", "concurrency": "chat_concurrency", "cpu": "chat_cpu"},
    "persona_route": {
        "min_instances": "route_min_instances",
        "concurrency": "route_concurrency",
        "cpu": "route_cpu",
    },
}  # fmt: skip


def test_the_function_module_passes_scaling_inputs_to_the_service_config() -> None:
    (function,) = resources("google_cloudfunctions2_function", MODULE).values()
    (service,) = function["service_config"]
    for module_input, argument in SCALING_ARGUMENTS.items():
        assert service[argument] == f"${{var.{module_input}}}"


@pytest.mark.parametrize("entry_point", sorted(SCALING_VARIABLES))
def test_public_apis_scale_by_typed_described_validated_variables(entry_point: str) -> None:
    module = deployed()[entry_point]
    declared = variables()
    for module_input, variable in SCALING_VARIABLES[entry_point].items():
        # The module instance, with each.value substituted: the variable reaches the input.
        assert module[module_input] == f"${{var.{variable}}}"
        body = declared[variable]
        assert body["type"] in ("number", "string"), variable
        assert len(body["description"]) > 20, variable
        assert body.get("validation"), variable


@pytest.mark.parametrize("entry_point", sorted(SCALING_VARIABLES))
def test_gunicorn_runs_a_worker_per_vcpu_and_a_thread_per_concurrent_request(
    entry_point: str,
) -> None:
    spec = deployed()[entry_point]["each.value"]
    cpu, concurrency = resolve(spec["cpu"]), resolve(spec["concurrency"])
    env = environment(entry_point)
    assert env["WORKERS"] == cpu
    assert env["THREADS"] == str(concurrency)
    # Cloud Run refuses a concurrency above 1 on a fraction of a vCPU.
    assert int(cpu) >= 1


def test_functions_framework_reads_the_gunicorn_variables_terraform_sets() -> None:
    from functions_framework._http import gunicorn

    source = Path(gunicorn.__file__).read_text(encoding="utf-8")
    assert 'os.environ.get("WORKERS"' in source
    assert 'os.environ.get("THREADS"' in source
