"""Contract tests for the production-operations Terraform: the edge (load balancer, Cloud
Armor), the regions, SLOs and uptime checks, backups you are told about, secret rotation,
audit logs, the budget, the environments and the deploy trigger.

Like tests/infra/test_terraform_contract.py (whose HCL helpers these reuse) they parse the
Terraform with python-hcl2; argument names were checked against the google provider's
documentation at the pinned version (6.50.0).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import hcl2
import pytest

from tests.infra.test_terraform_contract import (
    PUBLIC_HTTP,
    TF,
    _unquote,
    for_each_of,
    http_regions,
    instances,
    load_dir,
    locals_,
    resources,
    variables,
)
from tests.support.paths import REPO as ROOT

ENVIRONMENTS = TF / "environments"
OWASP_SETS = [
    "sqli",
    "xss",
    "lfi",
    "rfi",
    "rce",
    "scannerdetection",
    "protocolattack",
    "sessionfixation",
]


def render(text: str) -> str:
    """A string as Terraform renders it with every variable at its default."""

    def default(name: str) -> Any:
        return variables()[name]["default"]

    text = re.sub(
        r"\$\{pow\(10, var\.(\w+)\)\}", lambda m: str(10 ** int(default(m.group(1)))), text
    )
    text = re.sub(r"\$\{var\.(\w+) \+ 1\}", lambda m: str(int(default(m.group(1))) + 1), text)
    return re.sub(r"\$\{var\.(\w+)\}", lambda m: str(default(m.group(1))), text)


def unescape(text: str) -> str:
    """A quoted HCL string's value (python-hcl2 keeps the backslash escapes)."""
    return text.replace('\\"', '"').replace("\\\\", "\\")


def armor_rules() -> dict[str, dict[str, Any]]:
    rules = locals_()["armor_rules"]
    assert isinstance(rules, dict)
    return rules


def policy() -> dict[str, Any]:
    return resources("google_compute_security_policy")["edge"]


# ------------------------------------------------------------------------------------------
# Edge: load balancer
# ------------------------------------------------------------------------------------------


def test_every_public_api_in_every_region_has_a_serverless_neg() -> None:
    negs = instances("google_compute_region_network_endpoint_group", "http")
    assert set(negs) == {f"{api}-{region}" for api in PUBLIC_HTTP for region in http_regions()}
    for key, neg in negs.items():
        assert neg["network_endpoint_type"] == "SERVERLESS"
        assert neg["region"] == key.split("-", 1)[1]
        assert neg["cloud_run"][0]["service"] == f'${{module.http_function["{key}"].service}}'


def test_each_api_has_one_backend_service_with_a_backend_per_region() -> None:
    services = instances("google_compute_backend_service", "http")
    assert set(services) == PUBLIC_HTTP
    for api, service in services.items():
        assert service["load_balancing_scheme"] == "EXTERNAL_MANAGED"
        assert service["protocol"] == "HTTPS"
        assert service["security_policy"] == "${google_compute_security_policy.edge.id}"
        backend = service["dynamic"][0]["backend"]
        assert backend["for_each"] == "${toset(var.http_regions)}"
        assert backend["content"][0]["group"] == (
            f'${{google_compute_region_network_endpoint_group.http["{api}-${{backend.value}}"].id}}'
        )
        assert service["log_config"][0]["enable"] is True
        assert service["outlier_detection"][0]["max_ejection_percent"] <= 50


def _openapi_paths() -> set[str]:
    text = (ROOT / "openapi.yaml").read_text(encoding="utf-8")
    return set(re.findall(r"^  (/v1/\S+):$", text, re.M))


def test_url_map_sends_every_api_path_to_the_function_that_serves_it() -> None:
    paths = locals_()["api_paths"]
    assert set(paths) == PUBLIC_HTTP
    routed = {
        path
        for patterns in paths.values()
        for path in _openapi_paths()
        if any(path == p or (p.endswith("/*") and path.startswith(p[:-1])) for p in patterns)
    }
    assert routed == _openapi_paths()
    # Each function's own routes, as its code declares them.
    for api, source in (("chat", "chat_api.py"), ("persona_route", "route_api.py")):
        code = (ROOT / "shared" / "ion" / "entrypoints" / "http" / source).read_text(
            encoding="utf-8"
        )
        for path in re.findall(r'route\("\w+", "(/v1/[^"]*)"', code):
            assert any(
                path == p or (p.endswith("/*") and path.startswith(p[:-1])) for p in paths[api]
            ), (api, path)
    url_map = resources("google_compute_url_map")["edge"]
    assert url_map["host_rule"][0]["hosts"] == "${var.edge_domains}"
    rules = {
        rule["path_rule"]["for_each"]: rule["path_rule"]
        for rule in url_map["path_matcher"][0]["dynamic"]
    }
    assert rules["${local.api_paths}"]["content"][0]["service"] == (
        "${google_compute_backend_service.http[path_rule.key].id}"
    )
    health = rules["${local.health_paths}"]["content"][0]
    assert health["route_action"][0]["url_rewrite"][0]["path_prefix_rewrite"] == "/health"


def test_https_with_a_managed_certificate_and_http_only_redirects() -> None:
    cert = resources("google_compute_managed_ssl_certificate")["edge"]
    # The APIs' domains and the web app's (web.tf).
    assert cert["managed"][0]["domains"] == "${concat(var.edge_domains, [var.web_domain])}"
    proxy = resources("google_compute_target_https_proxy")["edge"]
    assert proxy["ssl_certificates"] == ["${google_compute_managed_ssl_certificate.edge.id}"]
    assert proxy["url_map"] == "${google_compute_url_map.edge.id}"
    ssl = resources("google_compute_ssl_policy")["edge"]
    assert (ssl["min_tls_version"], ssl["profile"]) == ("TLS_1_2", "MODERN")
    redirect = resources("google_compute_url_map")["redirect"]["default_url_redirect"][0]
    assert redirect["https_redirect"] is True
    http_proxy = resources("google_compute_target_http_proxy")["redirect"]
    assert http_proxy["url_map"] == "${google_compute_url_map.redirect.id}"
    rules = resources("google_compute_global_forwarding_rule")
    assert {r["port_range"]: r["target"] for r in rules.values()} == {
        "443": "${google_compute_target_https_proxy.edge.id}",
        "80": "${google_compute_target_http_proxy.redirect.id}",
    }
    for rule in rules.values():
        assert rule["ip_address"] == "${google_compute_global_address.edge.id}"
        assert rule["load_balancing_scheme"] == "EXTERNAL_MANAGED"


# ------------------------------------------------------------------------------------------
# Edge: Cloud Armor
# ------------------------------------------------------------------------------------------


def test_every_armor_rule_is_described_within_the_64_character_limit() -> None:
    descriptions = {name: render(rule["description"]) for name, rule in armor_rules().items()}
    default_rule = policy()["rule"][0]
    descriptions["default"] = default_rule["description"]
    assert all(descriptions.values())
    assert {name: d for name, d in descriptions.items() if len(d) > 64} == {}
    priorities = [rule["priority"] for rule in armor_rules().values()]
    assert len(priorities) == len(set(priorities))
    assert default_rule["priority"] == 2147483647 and default_rule["action"] == "allow"


def test_owasp_crs_rule_sets_at_the_documented_sensitivity() -> None:
    rules = armor_rules()
    for name in OWASP_SETS:
        assert rules[name]["expression"] == (
            f"evaluatePreconfiguredWaf('{name}-v33-stable', "
            "{'sensitivity': ${var.armor_waf_sensitivity}})"
        )
        assert rules[name]["action"] == "deny(403)"
    sensitivity = variables()["armor_waf_sensitivity"]["default"]
    assert sensitivity == 1
    operations = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    assert "sensitivity 1" in operations


def test_rules_that_could_block_learners_start_in_preview() -> None:
    content = policy()["dynamic"][0]["rule"]["content"][0]
    assert content["preview"] == (
        "${rule.value.learner_risk && !contains(var.armor_enforced_rules, rule.key)}"
    )
    assert variables()["armor_enforced_rules"]["default"] == []
    risky = {name for name, rule in armor_rules().items() if rule["learner_risk"]}
    assert risky == {"geo", "rate_ban", *OWASP_SETS}
    # Exactly these may be enforced, and docs/operations.md says how for each.
    condition = variables()["armor_enforced_rules"]["validation"][0]["condition"]
    assert set(re.findall(r'"(\w+)"', condition)) == risky
    operations = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    assert "armor_enforced_rules" in operations
    for name in risky:
        assert f"`{name}`" in operations, name


def test_rate_ban_body_size_geo_and_allow_list() -> None:
    rules = armor_rules()
    assert rules["rate_ban"]["action"] == "rate_based_ban" and rules["rate_ban"]["rate_ban"]
    options = policy()["dynamic"][0]["rule"]["content"][0]["dynamic"][0]["rate_limit_options"]
    limit = options["content"][0]
    assert (limit["enforce_on_key"], limit["exceed_action"]) == ("IP", "deny(429)")
    assert limit["ban_duration_sec"] == "${var.armor_ban_seconds}"
    body = render(rules["body_size"]["expression"])
    assert body == "request.headers['content-length'].matches('^[0-9]{6,}$')"
    assert rules["body_size"]["action"] == "deny(413)" and not rules["body_size"]["learner_risk"]
    assert rules["geo"]["enabled"] == "${length(var.armor_allowed_regions) > 0}"
    assert rules["trusted"]["enabled"] == "${length(var.armor_trusted_ip_ranges) > 0}"
    assert rules["trusted"]["action"] == "allow"
    assert min(r["priority"] for r in rules.values()) == rules["trusted"]["priority"]


def test_adaptive_protection_is_on() -> None:
    config = policy()["adaptive_protection_config"][0]["layer_7_ddos_defense_config"][0]
    assert config["enable"] is True


def test_public_apis_are_reachable_only_through_the_load_balancer() -> None:
    module_vars = (TF / "modules" / "function" / "variables.tf").read_text(encoding="utf-8")
    assert '"ALLOW_ALL"' not in module_vars  # the module refuses it


# ------------------------------------------------------------------------------------------
# SLOs, burn rates, uptime, channels
# ------------------------------------------------------------------------------------------


def test_availability_slo_excludes_the_llm_503_which_has_its_own() -> None:
    counters = for_each_of(resources("google_logging_metric")["counter"])
    slos = for_each_of(resources("google_monitoring_slo")["chat_ratio"])
    assert slos["availability"]["goal"] == "${var.slo_availability_goal}"
    assert variables()["slo_availability_goal"]["default"] == 0.999
    assert slos["availability"]["bad"] == "chat_server_errors"
    assert slos["llm"]["bad"] == "chat_llm_unavailable"
    bad = counters["chat_server_errors"]["filter"]
    assert "jsonPayload.status>=500" in bad and "NOT (${local.llm_unavailable})" in bad
    assert unescape(locals_()["llm_unavailable"]) == (
        'jsonPayload.status=503 AND jsonPayload.code="llm_unavailable"'
    )
    assert "${local.llm_unavailable}" in counters["chat_llm_unavailable"]["filter"]
    for slo in slos.values():
        assert slo["bad"] in counters
    ratio = resources("google_monitoring_slo")["chat_ratio"]
    assert ratio["service"] == "${google_monitoring_custom_service.chat.service_id}"


def test_latency_slo_is_time_to_meta_under_a_second_for_99_percent() -> None:
    slo = resources("google_monitoring_slo")["chat_latency"]
    assert slo["goal"] == "${var.slo_latency_goal}"
    assert variables()["slo_latency_goal"]["default"] == 0.99
    assert variables()["slo_latency_threshold_ms"]["default"] == 1000
    cut = slo["request_based_sli"][0]["distribution_cut"][0]
    assert "google_logging_metric.chat_time_to_meta.name" in cut["distribution_filter"]
    assert cut["range"][0]["max"] == "${var.slo_latency_threshold_ms}"
    metric = resources("google_logging_metric")["chat_time_to_meta"]
    assert metric["value_extractor"] == "EXTRACT(jsonPayload.time_to_meta_ms)"


def test_burn_rate_alerts_are_multi_window() -> None:
    alerts = for_each_of(resources("google_monitoring_alert_policy")["burn_rate"])
    assert set(alerts) == {"fast", "slow"}
    for alert in alerts.values():
        assert int(alert["long"].rstrip("s")) >= 4 * int(alert["short"].rstrip("s"))
    assert alerts["fast"]["rate"] > alerts["slow"]["rate"]
    policy_ = resources("google_monitoring_alert_policy")["burn_rate"]
    assert policy_["combiner"] == "AND"  # both windows must burn
    condition = policy_["dynamic"][0]["conditions"]["content"][0]["condition_threshold"][0]
    assert (
        'select_slo_burn_rate(\\"${google_monitoring_slo.chat_ratio["availability"].name}'
        in (condition["filter"].replace('"', '\\"').replace('\\\\"', '\\"'))
        or "google_monitoring_slo.chat_ratio" in condition["filter"]
    )


def test_uptime_checks_hit_health_of_every_api_through_the_load_balancer() -> None:
    checks = instances("google_monitoring_uptime_check_config", "edge")
    assert set(checks) == PUBLIC_HTTP
    for api, check in checks.items():
        http = check["http_check"][0]
        assert http["path"] == f"/_health/{api}"
        assert (http["use_ssl"], http["validate_ssl"], http["port"]) == (True, True, 443)
        labels = check["monitored_resource"][0]["labels"]
        assert labels["host"] == "${var.edge_domains[0]}"
    alert = resources("google_monitoring_alert_policy")["uptime"]
    conditions = alert["dynamic"][0]["conditions"]
    assert conditions["for_each"] == "${google_monitoring_uptime_check_config.edge}"


def test_alerts_go_to_email_and_optional_webhook_and_extra_channels() -> None:
    channels = locals_()["notification_channels"]
    for part in (
        "google_monitoring_notification_channel.email[*].id",
        "google_monitoring_notification_channel.webhook[*].id",
        "var.alert_extra_channels",
    ):
        assert part in channels
    webhook = resources("google_monitoring_notification_channel")["webhook"]
    assert webhook["type"] == "webhook_tokenauth"
    assert variables()["alert_webhook_url"]["sensitive"] is True
    for kind in ("google_monitoring_alert_policy",):
        for name, body in resources(kind).items():
            assert body["notification_channels"] == "${local.notification_channels}", name


def test_dashboard_has_slo_and_error_budget_panels() -> None:
    text = (TF / "dashboard.tf").read_text(encoding="utf-8")
    for selector in ("select_slo_compliance", "select_slo_budget_fraction", "select_slo_burn_rate"):
        assert selector in text


# ------------------------------------------------------------------------------------------
# Backups
# ------------------------------------------------------------------------------------------


def test_backup_absence_alert_matches_the_line_the_backup_writes_on_success() -> None:
    source = (ROOT / "shared" / "ion" / "services" / "backup.py").read_text(encoding="utf-8")
    # The lines themselves, and their levels, are checked by running a backup:
    # tests/test_backup_log_levels.py.
    assert '"backup %s is now %s%s"' in source
    assert '"succeeded"' in (
        ROOT / "shared" / "ion" / "adapters" / "firestore" / "backup.py"
    ).read_text(encoding="utf-8")
    metric = resources("google_logging_metric")["backup_succeeded"]
    found = re.search(r'jsonPayload\.message=~"(.*)"$', unescape(metric["filter"]))
    assert found
    pattern = found.group(1)
    assert re.fullmatch(pattern, "backup 20260301T030000Z is now succeeded")
    assert not re.fullmatch(pattern, "backup 20260301T030000Z is now failed")
    assert "${local.function_names.backup}" in metric["filter"]
    alert = resources("google_monitoring_alert_policy")["backup_missing"]
    condition = alert["conditions"][0]["condition_threshold"][0]
    assert "google_logging_metric.backup_succeeded.name" in condition["filter"]
    assert (condition["comparison"], condition["threshold_value"]) == ("COMPARISON_LT", 1)
    assert condition["evaluation_missing_data"] == "EVALUATION_MISSING_DATA_ACTIVE"
    # 25 h of alignment (the alerting maximum) held for one more hour: 26 h without success.
    window = int(condition["aggregations"][0]["alignment_period"].rstrip("s"))
    retest = int(condition["duration"].rstrip("s"))
    assert window <= 90_000 and window + retest == 26 * 3600


def test_firestore_native_backups_run_daily_with_a_retention_variable() -> None:
    schedule = resources("google_firestore_backup_schedule")["daily"]
    assert "daily_recurrence" in schedule
    assert schedule["retention"] == "${var.firestore_backup_retention_days * 86400}s"
    assert schedule["database"] == "${google_firestore_database.main.name}"
    validation = variables()["firestore_backup_retention_days"]["validation"][0]["condition"]
    assert "<= 98" in validation  # Firestore keeps a backup at most 14 weeks


# ------------------------------------------------------------------------------------------
# Secrets, audit, cost
# ------------------------------------------------------------------------------------------


def test_jwt_secret_rotation_is_scheduled_on_a_topic_someone_watches() -> None:
    secret = resources("google_secret_manager_secret")["jwt"]
    assert secret["topics"][0]["name"] == "${google_pubsub_topic.secret_rotation.id}"
    assert secret["rotation"][0]["rotation_period"] == "${var.jwt_rotation_days * 86400}s"
    assert secret["lifecycle"][0]["ignore_changes"] == ["${rotation[0].next_rotation_time}"] or (
        "next_rotation_time" in str(secret["lifecycle"][0]["ignore_changes"])
    )
    grant = resources("google_pubsub_topic_iam_member")["rotation_publisher"]
    assert grant["member"] == "${local.secretmanager_agent}"
    assert grant["role"] == "roles/pubsub.publisher"
    hold = resources("google_pubsub_subscription")["secret_rotation_hold"]
    assert hold["topic"] == "${google_pubsub_topic.secret_rotation.id}"
    alert = resources("google_monitoring_alert_policy")["secret_rotation"]
    condition = alert["conditions"][0]["condition_threshold"][0]
    assert "google_pubsub_subscription.secret_rotation_hold.name" in condition["filter"]


def test_data_access_audit_logs_for_firestore_secret_manager_and_storage() -> None:
    audit = resources("google_project_iam_audit_config")["data_access"]
    # Firestore's audit logs are configured under datastore.googleapis.com.
    assert set(
        audit["for_each"]
        .removeprefix("${toset(")
        .removesuffix(")}")
        .replace('"', "")
        .replace(" ", "")
        .strip("[]")
        .split(",")
    ) >= {
        "datastore.googleapis.com",
        "secretmanager.googleapis.com",
        "storage.googleapis.com",
    }
    types = {config["log_type"] for config in audit["audit_log_config"]}
    assert {"DATA_READ", "DATA_WRITE"} <= types


def test_every_checkov_skip_carries_a_reason() -> None:
    skips = []
    for path in sorted(TF.rglob("*.tf")):
        for line in path.read_text(encoding="utf-8").splitlines():
            found = re.search(r"#checkov:skip=(CKV\w+)(?::(.*))?", line)
            if found:
                skips.append((path.name, found.group(1), (found.group(2) or "").strip()))
    assert skips
    assert [s for s in skips if len(s[2]) < 30] == []
    # The bucket skips rely on storage Data Access logs: they must be on.
    bucket_skips = [s for s in skips if s[1] == "CKV_GCP_62"]
    assert bucket_skips and all("data_access" in s[2] for s in bucket_skips)


def test_budget_has_thresholds_and_notifies_the_alert_channels() -> None:
    budget = resources("google_billing_budget")["project"]
    rules = budget["threshold_rules"]
    assert sorted(r["threshold_percent"] for r in rules) == [0.5, 0.9, 1.0, 1.0]
    assert any(r.get("spend_basis") == "FORECASTED_SPEND" for r in rules)
    notify = budget["all_updates_rule"][0]
    assert notify["monitoring_notification_channels"] == "${local.notification_channels}"
    assert budget["budget_filter"][0]["projects"] == ["projects/${local.project_number}"]


# ------------------------------------------------------------------------------------------
# Environments and delivery
# ------------------------------------------------------------------------------------------


def _tfvars(name: str) -> dict[str, Any]:
    with (ENVIRONMENTS / f"{name}.tfvars").open(encoding="utf-8") as handle:
        data: dict[str, Any] = _unquote(hcl2.load(handle))
    return data


def _backend(name: str) -> dict[str, str]:
    text = (ENVIRONMENTS / f"{name}.backend.hcl").read_text(encoding="utf-8")
    return dict(re.findall(r'^(\w+)\s*=\s*"([^"]*)"', text, re.M))


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_each_environment_has_its_tfvars_and_state_prefix(env: str) -> None:
    declared = variables()
    required = {name for name, body in declared.items() if "default" not in body}
    given = _tfvars(env)
    assert set(given) - set(declared) == set()
    assert required - set(given) == set()
    assert given["environment"] == env
    assert given["region"] in given["http_regions"]
    assert _backend(env)["prefix"] == f"ion/{env}"


def test_environments_are_apart_and_prod_is_multi_region_behind_an_approval() -> None:
    envs = {name: _tfvars(name) for name in ("dev", "staging", "prod")}
    assert len({e["project_id"] for e in envs.values()}) == 3
    assert len({_backend(name)["prefix"] for name in envs}) == 3
    for name in ("staging", "prod"):
        assert len(envs[name]["http_regions"]) >= 2
    assert envs["prod"]["deploy_requires_approval"] is True
    assert envs["staging"]["deploy_requires_approval"] is False
    trigger = resources("google_cloudbuild_trigger")["deploy"]
    assert trigger["approval_config"][0]["approval_required"] == "${var.deploy_requires_approval}"
    assert trigger["substitutions"]["_ENV"] == "${var.environment}"
    assert trigger["filename"] == "cloudbuild.yaml"
    assert trigger["github"][0]["push"][0]["branch"] == "${var.deploy_branch}"


def test_new_resources_live_in_their_concern_file() -> None:
    homes = {
        "edge.tf": ["google_compute_security_policy", "google_compute_url_map"],
        "slo.tf": ["google_monitoring_slo", "google_monitoring_uptime_check_config"],
        "cost.tf": ["google_billing_budget"],
        "cicd.tf": ["google_cloudbuild_trigger"],
        "backup.tf": ["google_firestore_backup_schedule"],
    }
    for name, kinds in homes.items():
        text = (TF / name).read_text(encoding="utf-8")
        for kind in kinds:
            assert f'resource "{kind}"' in text, (name, kind)
    assert load_dir(TF)  # parses
    assert Path(TF / "moved.tf").is_file()
