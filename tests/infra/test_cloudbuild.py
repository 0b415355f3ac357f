"""cloudbuild.yaml: step order, substitutions, and the rollout script it drives.

scripts/rollout.sh runs here against a fake `gcloud` (tests/infra/fake_cloud_run.py), so
the canary, bake, promote and rollback logic is exercised for real; only Google's API is
replaced.
"""

from __future__ import annotations

import http.server
import itertools
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.infra.fake_cloud_run import ROLLOUT, FakeCloud, ok
from tests.infra.test_terraform_contract import (
    PUBLIC_HTTP,
    http_regions,
    instances,
    locals_,
    resources,
)
from tests.support.paths import REPO as ROOT

ORDER = [
    "lint",
    "test",
    "package",
    "terraform-plan",
    "terraform-apply",
    "deploy-no-traffic",
    "smoke-test",
    "canary",
    "promote",
]


def build() -> dict[str, Any]:
    with (ROOT / "cloudbuild.yaml").open(encoding="utf-8") as handle:
        data: dict[str, Any] = yaml.safe_load(handle)
    return data


def steps() -> dict[str, dict[str, Any]]:
    return {step["id"]: step for step in build()["steps"]}


def command_of(step: dict[str, Any]) -> str:
    return str(step.get("script", "")) + " " + " ".join(step.get("args", []))


def test_steps_run_in_the_release_order() -> None:
    ids = [step["id"] for step in build()["steps"]]
    assert [i for i in ids if i in ORDER] == ORDER


def test_each_step_waits_for_the_one_before_it() -> None:
    # waitFor makes the order real: Cloud Build runs steps without it concurrently.
    all_steps = steps()
    for before, after in itertools.pairwise(ORDER):
        waits = all_steps[after].get("waitFor")
        assert waits, f"{after} has no waitFor"
        chain = set(waits)
        # Follow the chain back: `before` must be an ancestor of `after`.
        seen: set[str] = set()
        while chain - seen:
            current = (chain - seen).pop()
            seen.add(current)
            chain |= set(all_steps[current].get("waitFor", [])) - {"-"}
        assert before in seen, f"{after} does not wait for {before}"


def test_substitutions_and_their_defaults() -> None:
    subs = build()["substitutions"]
    assert subs["_CANARY_PERCENT"] == "10"
    assert {
        "_ENV",
        "_REGIONS",
        "_REGION",
        "_CANARY_BAKE_SECONDS",
        "_TF_STATE_BUCKET",
        "_TF_VARS_FILE",
    } <= set(subs)
    # Every substitution the deploy triggers set exists here (terraform/cicd.tf).
    cicd = (ROOT / "terraform" / "cicd.tf").read_text(encoding="utf-8")
    assert set(re.findall(r"^\s+(_[A-Z0-9_]+)\s+=", cicd, re.M)) <= set(subs)
    assert all(re.fullmatch(r"_[A-Z0-9_]+", key) for key in subs)
    assert build()["options"]["automapSubstitutions"] is True


def test_steps_do_what_their_names_say() -> None:
    s = steps()
    assert "make lint typecheck" in command_of(s["lint"])
    assert "make unit" in command_of(s["test"])
    assert s["test"]["name"].endswith(":emulators")
    assert "make package" in command_of(s["package"])
    assert "terraform plan" in command_of(s["terraform-plan"])
    assert "-out=tfplan" in command_of(s["terraform-plan"])
    assert command_of(s["terraform-apply"]).split()[-3:] == ["apply", "-input=false", "tfplan"]
    assert "each-region.sh candidate" in command_of(s["deploy-no-traffic"])
    assert "each-region.sh smoke" in command_of(s["smoke-test"])
    assert 'each-region.sh canary "$_CANARY_PERCENT"' in command_of(s["canary"])
    assert "each-region.sh promote" in command_of(s["promote"])
    assert "each-region.sh pin" in command_of(s["pin-traffic"])


def test_plan_uses_the_environment_tfvars_and_state_prefix() -> None:
    plan = command_of(steps()["terraform-plan"])
    assert '-backend-config="$backend"' in plan
    assert 'backend="environments/$_ENV.backend.hcl"' in plan
    assert '-var-file="${_TF_VARS_FILE:-environments/$_ENV.tfvars}"' in plan
    for env in ("dev", "staging", "prod"):
        assert (ROOT / "terraform" / "environments" / f"{env}.tfvars").is_file()
        assert (ROOT / "terraform" / "environments" / f"{env}.backend.hcl").is_file()


def test_rollout_runs_in_every_region_with_its_own_state() -> None:
    pin = command_of(steps()["pin-traffic"])
    helper = pin.split("<<'EOF'\n", 1)[1].split("\nEOF\n", 1)[0]
    assert "for region in $_REGIONS; do" in helper
    assert (
        'REGION="$region" ROLLOUT_STATE="/workspace/rollout/$region" bash scripts/rollout.sh "$@"'
        in helper
    )
    # One failed region fails the step.
    assert 'wait "$pid" || status=1' in helper and 'exit "$status"' in helper


def test_documented_rollback_is_the_command_the_script_runs() -> None:
    deploy_md = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    documented = re.findall(
        r"gcloud run services update-traffic \S+ --region=\S+ --to-revisions=\S+=100", deploy_md
    )
    assert documented, "docs/deploy.md documents no rollback command"
    script = ROLLOUT.read_text(encoding="utf-8")
    assert 'gcloud run services update-traffic "$service" --region="$REGION"' in script
    assert '--to-revisions="$stable=100"' in script


# ------------------------------------------------------------------------------------------
# rollout.sh against a fake gcloud
# ------------------------------------------------------------------------------------------


def test_canary_rollout_moves_traffic_step_by_step(cloud: FakeCloud) -> None:
    cloud.deploy("ion-chat", "chat-1", takes_traffic=True)
    ok(cloud.run("pin"))
    # The apply's new revision grabs all traffic (as the provider may do); the rollout
    # puts it back on the stable revision before anyone sees it.
    cloud.deploy("ion-chat", "chat-2", takes_traffic=True)
    ok(cloud.run("candidate"))
    assert cloud.traffic("ion-chat") == {"chat-1": 100}
    assert cloud.load()["services"]["ion-chat"]["tags"] == {"candidate": "chat-2"}
    ok(cloud.run("canary", "10"))
    assert cloud.traffic("ion-chat") == {"chat-2": 10, "chat-1": 90}
    ok(cloud.run("bake", "0"))
    ok(cloud.run("promote"))
    assert cloud.traffic("ion-chat") == {"chat-2": 100}


def test_failed_bake_rolls_back_and_fails_the_build(cloud: FakeCloud) -> None:
    cloud.deploy("ion-chat", "chat-1", takes_traffic=True)
    ok(cloud.run("pin"))
    cloud.deploy("ion-chat", "chat-2", takes_traffic=False)
    ok(cloud.run("candidate"))
    ok(cloud.run("canary", "10"))
    result = cloud.run("bake", "0", errors=3)
    assert result.returncode == 1
    assert cloud.traffic("ion-chat") == {"chat-1": 100}


def test_rollback_returns_all_traffic_to_the_stable_revision(cloud: FakeCloud) -> None:
    cloud.deploy("ion-chat", "chat-1", takes_traffic=True)
    ok(cloud.run("pin"))
    cloud.deploy("ion-chat", "chat-2", takes_traffic=False)
    ok(cloud.run("candidate"))
    ok(cloud.run("promote"))
    ok(cloud.run("rollback"))
    assert cloud.traffic("ion-chat") == {"chat-1": 100}


def test_first_deployment_has_nothing_to_pin_or_split(cloud: FakeCloud) -> None:
    ok(cloud.run("pin"))
    cloud.deploy("ion-chat", "chat-1", takes_traffic=True)
    ok(cloud.run("candidate"))
    ok(cloud.run("canary", "10"))
    ok(cloud.run("promote"))
    assert cloud.traffic("ion-chat") == {"chat-1": 100}


def test_unchanged_code_deploys_no_candidate(cloud: FakeCloud) -> None:
    cloud.deploy("ion-chat", "chat-1", takes_traffic=True)
    ok(cloud.run("pin"))
    assert "no new revision" in ok(cloud.run("candidate"))
    ok(cloud.run("canary", "10"))
    assert cloud.traffic("ion-chat") == {"chat-1": 100}


# ------------------------------------------------------------------------------------------
# The smoke test reaches the candidate through the load balancer
# ------------------------------------------------------------------------------------------


class StubEdge:
    """Stands in for the load balancer: answers the candidate routes of terraform/edge.tf
    (/_candidate/<region>/<entry point>/<path>) with what a healthy function answers, and
    records every request."""

    def __init__(self, answers: dict[str, int]) -> None:
        self.answers = answers
        self.requests: list[tuple[str, str]] = []
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                stub.requests.append(("GET", self.path))
                self.send_response(stub.answers.get(self.path, 404))
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


HEALTHY_CANDIDATES = {
    "/_candidate/us-central1/chat/health": 200,
    "/_candidate/us-central1/chat/ready": 200,
    "/_candidate/us-central1/chat/v1/conversations": 401,
    "/_candidate/us-central1/persona_route/health": 200,
    "/_candidate/us-central1/persona_route/ready": 200,
    "/_candidate/us-central1/persona_route/v1/personas": 401,
}


@pytest.fixture
def edge() -> Iterator[StubEdge]:
    stub = StubEdge(dict(HEALTHY_CANDIDATES))
    yield stub
    stub.close()


def test_smoke_reaches_each_candidate_through_the_load_balancer(
    cloud: FakeCloud, edge: StubEdge, tmp_path: Path
) -> None:
    for service, revision in (("ion-chat", "chat-1"), ("ion-persona-route", "route-1")):
        cloud.deploy(service, revision, takes_traffic=True)
    services = "ion-chat ion-persona-route"
    ok(cloud.run("pin", SERVICES=services))
    cloud.deploy("ion-chat", "chat-2", takes_traffic=False)
    cloud.deploy("ion-persona-route", "route-2", takes_traffic=False)
    ok(cloud.run("candidate", SERVICES=services))
    # The URL comes from the file the edge-url step writes (terraform output api_url).
    (tmp_path / "edge_url").write_text(edge.url + "/\n", encoding="utf-8")
    out = ok(cloud.run("smoke", SERVICES=services, EDGE_URL_FILE=str(tmp_path / "edge_url")))
    assert edge.requests == [("GET", path) for path in HEALTHY_CANDIDATES]
    assert f"ok: GET {edge.url}/_candidate/us-central1/chat/health -> 200" in out
    # Never the candidate's run.app URL, which refuses callers outside Google's network.
    assert not any("run.app" in " ".join(call) for call in cloud.load()["calls"])


def test_smoke_fails_the_build_when_a_candidate_is_unhealthy(
    cloud: FakeCloud, edge: StubEdge
) -> None:
    cloud.deploy("ion-chat", "chat-1", takes_traffic=True)
    ok(cloud.run("pin"))
    cloud.deploy("ion-chat", "chat-2", takes_traffic=False)
    ok(cloud.run("candidate"))
    edge.answers["/_candidate/us-central1/chat/ready"] = 503
    result = cloud.run("smoke", EDGE_URL=edge.url, SMOKE_ATTEMPTS="2", SMOKE_RETRY_SECONDS="0")
    assert result.returncode == 1
    assert (
        f"smoke test failed: GET {edge.url}/_candidate/us-central1/chat/ready answered 503,"
        " expected 200"
    ) in result.stderr
    assert edge.requests.count(("GET", "/_candidate/us-central1/chat/ready")) == 2
    assert cloud.traffic("ion-chat") == {"chat-1": 100}  # the candidate got nothing


def test_smoke_without_the_edge_url_fails_instead_of_skipping(cloud: FakeCloud) -> None:
    cloud.deploy("ion-chat", "chat-1", takes_traffic=True)
    ok(cloud.run("pin"))
    cloud.deploy("ion-chat", "chat-2", takes_traffic=False)
    ok(cloud.run("candidate"))
    result = cloud.run("smoke", EDGE_URL="", EDGE_URL_FILE="/nonexistent/edge_url")
    assert result.returncode == 1
    assert "no EDGE_URL" in result.stderr


def test_build_gives_the_smoke_test_the_load_balancer_url() -> None:
    s = steps()
    assert "terraform -chdir=terraform output -raw api_url > /workspace/edge_url" in (
        command_of(s["edge-url"])
    )
    assert s["edge-url"]["waitFor"] == ["terraform-apply"]
    assert set(s["smoke-test"]["waitFor"]) == {"deploy-no-traffic", "edge-url"}
    script = ROLLOUT.read_text(encoding="utf-8")
    assert "/workspace/edge_url" in script
    assert 'url="$edge/_candidate/$REGION/$entry_point"' in script


def test_edge_routes_candidate_paths_to_the_tagged_revision_of_each_region() -> None:
    """terraform/edge.tf: /_candidate/<region>/<entry point>/* goes, rewritten to /*, to a
    serverless NEG on that region's service with the tag rollout.sh sets; Cloud Armor lets
    through exactly the calls the smoke test makes."""
    deployments = {f"{api}-{region}" for api in PUBLIC_HTTP for region in http_regions()}
    negs = instances("google_compute_region_network_endpoint_group", "candidate")
    assert set(negs) == deployments
    for key, neg in negs.items():
        assert neg["network_endpoint_type"] == "SERVERLESS"
        assert neg["cloud_run"][0] == {
            "service": f'${{module.http_function["{key}"].service}}',
            "tag": "candidate",
        }
    script = ROLLOUT.read_text(encoding="utf-8")
    assert 'update_traffic "$service" --to-revisions="$stable=100" --set-tags="candidate=$new"' in (
        script
    )
    backends = instances("google_compute_backend_service", "candidate")
    assert set(backends) == deployments
    for key, backend in backends.items():
        assert backend["backend"][0]["group"] == (
            f'${{google_compute_region_network_endpoint_group.candidate["{key}"].id}}'
        )
        assert backend["security_policy"] == "${google_compute_security_policy.edge.id}"
        assert backend["load_balancing_scheme"] == "EXTERNAL_MANAGED"
    assert locals_()["candidate_paths"] == (
        "${{for key, deployment in local.http_deployments : "
        'key => "/_candidate/${deployment.region}/${deployment.entry_point}"}}'
    )
    url_map = resources("google_compute_url_map")["edge"]
    rules = {
        rule["path_rule"]["for_each"]: rule["path_rule"]["content"][0]
        for rule in url_map["path_matcher"][0]["dynamic"]
    }
    candidate = rules["${local.candidate_paths}"]
    assert candidate["paths"] == ["${path_rule.value}/*"]
    assert candidate["service"] == "${google_compute_backend_service.candidate[path_rule.key].id}"
    assert candidate["route_action"][0]["url_rewrite"][0]["path_prefix_rewrite"] == "/"

    rule = locals_()["armor_rules"]["candidate"]
    assert (rule["action"], rule["learner_risk"], rule["enabled"]) == ("deny(404)", False, True)
    allowed = re.search(r"request\.path\.matches\('([^']+)'\)", rule["expression"])
    assert allowed and "request.path.startsWith('/_candidate/')" in rule["expression"]
    assert "request.method == 'GET'" in rule["expression"]
    smoke_calls = [path for path in HEALTHY_CANDIDATES]
    assert all(re.fullmatch(allowed.group(1), path) for path in smoke_calls)
    for refused in (
        "/_candidate/us-central1/chat/v1/chat",
        "/_candidate/us-central1/chat/v1/conversations/c1",
        "/_candidate/us-central1/persona_route/v1/route",
    ):
        assert not re.fullmatch(allowed.group(1), refused)


def test_pre_commit_runs_the_same_checks_as_make() -> None:
    """.pre-commit-config.yaml runs exactly the commands of `make lint`, `make typecheck`
    and `make tf-fmt`."""
    with (ROOT / ".pre-commit-config.yaml").open(encoding="utf-8") as handle:
        config = yaml.safe_load(handle)
    hooks = {hook["id"]: hook for repo in config["repos"] for hook in repo["hooks"]}
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")

    def recipe(target: str) -> list[str]:
        body = makefile.split(f"\n{target}:", 1)[1].split("\n\n", 1)[0]
        lines = [line.strip() for line in body.splitlines()[1:] if line.startswith("\t")]
        return [line.replace("$(BIN)", ".venv/bin") for line in lines if "command -v" not in line]

    expected = recipe("lint") + recipe("typecheck") + recipe("tf-fmt")
    entries = [hook["entry"].removeprefix("env ") for hook in hooks.values()]
    assert entries == expected
    assert all(hook["pass_filenames"] is False for hook in hooks.values())
