"""Startup CPU boost: Terraform decides (variable startup_cpu_boost, output
startup_cpu_boost_services), cloudbuild.yaml hands the decision to scripts/rollout.sh, and
the `candidate` step applies it through Cloud Run before tagging, since the provider's
google_cloudfunctions2_function cannot set it. The rollout runs against the fake gcloud."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.infra.fake_cloud_run import ROLLOUT, FakeCloud, ok
from tests.infra.test_cloudbuild import build, command_of, steps
from tests.infra.test_terraform_contract import (
    MODULE,
    PUBLIC_HTTP,
    TF,
    load_dir,
    locals_,
    modules,
    variables,
)

BOOST = "run.googleapis.com/startup-cpu-boost"
BOOST_ON = ["run", "services", "update", "ion-chat", "--region=us-central1", "--cpu-boost"]
BOOST_OFF = ["run", "services", "update", "ion-chat", "--region=us-central1", "--no-cpu-boost"]
NO_TRAFFIC = ["--no-traffic", "--quiet"]


def outputs(directory: Path = TF) -> dict[str, dict[str, Any]]:
    return {name: body for block in load_dir(directory)["output"] for name, body in block.items()}


# ------------------------------------------------------------------------------------------
# Terraform is the source of the setting
# ------------------------------------------------------------------------------------------


def test_startup_cpu_boost_is_a_described_bool_on_by_default() -> None:
    variable = variables()["startup_cpu_boost"]
    assert variable["type"] == "bool"
    assert variable["default"] is True
    # null would silently mean "off" in the output's condition; Terraform refuses it.
    assert variable["nullable"] is False
    assert "startup_cpu_boost_services" in variable["description"]


def test_the_output_names_every_public_api_service_when_boost_is_on() -> None:
    output = outputs()["startup_cpu_boost_services"]
    assert output["value"] == (
        "${var.startup_cpu_boost ? sort(distinct([for function in module.http_function :"
        " function.service])) : []}"
    )
    # module.http_function holds one instance per public API and region, named after the
    # API, and its `service` output is that name: the output is the public APIs' services.
    http_function = modules()["http_function"]
    assert http_function["for_each"] == "${local.http_deployments}"
    assert http_function["name"] == "${local.function_names[each.value.entry_point]}"
    assert outputs(MODULE)["service"]["value"] == "${google_cloudfunctions2_function.this.name}"
    boosted = sorted(locals_()["function_names"][entry_point] for entry_point in PUBLIC_HTTP)
    assert boosted == ["ion-chat", "ion-persona-route"]
    # ...which are exactly the services the rollout drives.
    assert sorted(build()["substitutions"]["_CANARY_SERVICES"].split()) == boosted


def test_the_build_hands_terraforms_setting_to_the_candidate_step() -> None:
    s = steps()
    setting = s["cpu-boost-setting"]
    assert setting["name"].startswith("hashicorp/terraform:")
    assert setting["waitFor"] == ["terraform-apply"]
    assert (
        "terraform -chdir=terraform output -json startup_cpu_boost_services"
        " > /workspace/startup_cpu_boost_services.json"
    ) in command_of(setting)
    assert set(s["deploy-no-traffic"]["waitFor"]) == {"terraform-apply", "cpu-boost-setting"}
    script = ROLLOUT.read_text(encoding="utf-8")
    assert 'file="${CPU_BOOST_FILE:-/workspace/startup_cpu_boost_services.json}"' in script


# ------------------------------------------------------------------------------------------
# rollout.sh candidate applies it
# ------------------------------------------------------------------------------------------


def test_the_candidate_is_the_boosted_revision_with_no_traffic_until_the_canary(
    cloud: FakeCloud,
) -> None:
    cloud.boost_in_terraform("ion-chat", "ion-persona-route")
    cloud.deploy("ion-chat", "chat-1", takes_traffic=True, cpu_boost=True)
    ok(cloud.run("pin"))
    # The Cloud Functions API builds the new code into a revision without the boost.
    cloud.deploy("ion-chat", "chat-2", takes_traffic=False)
    out = ok(cloud.run("candidate"))
    assert cloud.updates() == [BOOST_ON + NO_TRAFFIC]
    assert cloud.revisions("ion-chat") == ["chat-1", "chat-2", "ion-chat-00003"]
    assert cloud.annotations("ion-chat", "ion-chat-00003") == {BOOST: "true"}
    assert cloud.load()["services"]["ion-chat"]["tags"] == {"candidate": "ion-chat-00003"}
    assert (cloud.rollout_dir / "ion-chat.candidate").read_text().strip() == "ion-chat-00003"
    assert cloud.traffic("ion-chat") == {"chat-1": 100}
    assert "ion-chat: startup CPU boost true in ion-chat-00003" in out
    ok(cloud.run("canary", "10"))
    assert cloud.traffic("ion-chat") == {"ion-chat-00003": 10, "chat-1": 90}
    ok(cloud.run("promote"))
    assert cloud.traffic("ion-chat") == {"ion-chat-00003": 100}


def test_an_already_boosted_revision_gets_no_extra_revision(cloud: FakeCloud) -> None:
    cloud.boost_in_terraform("ion-chat", "ion-persona-route")
    cloud.deploy("ion-chat", "chat-1", takes_traffic=True, cpu_boost=True)
    ok(cloud.run("pin"))
    cloud.deploy("ion-chat", "chat-2", takes_traffic=False, cpu_boost=True)
    ok(cloud.run("candidate"))
    ok(cloud.run("candidate"))  # a retried step changes nothing either
    assert cloud.updates() == []
    assert cloud.revisions("ion-chat") == ["chat-1", "chat-2"]
    assert cloud.load()["services"]["ion-chat"]["tags"] == {"candidate": "chat-2"}
    assert cloud.traffic("ion-chat") == {"chat-1": 100}


def test_a_retried_candidate_step_boosts_once(cloud: FakeCloud) -> None:
    cloud.boost_in_terraform("ion-chat")
    cloud.deploy("ion-chat", "chat-1", takes_traffic=True, cpu_boost=True)
    ok(cloud.run("pin"))
    cloud.deploy("ion-chat", "chat-2", takes_traffic=False)
    ok(cloud.run("candidate"))
    ok(cloud.run("candidate"))
    assert cloud.updates() == [BOOST_ON + NO_TRAFFIC]
    assert cloud.revisions("ion-chat") == ["chat-1", "chat-2", "ion-chat-00003"]
    assert cloud.load()["services"]["ion-chat"]["tags"] == {"candidate": "ion-chat-00003"}


def test_boost_off_in_terraform_makes_no_update(cloud: FakeCloud) -> None:
    cloud.boost_in_terraform()  # startup_cpu_boost = false: the output is []
    cloud.deploy("ion-chat", "chat-1", takes_traffic=True)
    ok(cloud.run("pin"))
    cloud.deploy("ion-chat", "chat-2", takes_traffic=False)
    ok(cloud.run("candidate"))
    assert cloud.updates() == []
    assert cloud.revisions("ion-chat") == ["chat-1", "chat-2"]
    assert cloud.annotations("ion-chat", "chat-2") == {}
    assert cloud.load()["services"]["ion-chat"]["tags"] == {"candidate": "chat-2"}


def test_turning_boost_off_clears_it_from_the_candidate(cloud: FakeCloud) -> None:
    cloud.boost_in_terraform()
    cloud.deploy("ion-chat", "chat-1", takes_traffic=True, cpu_boost=True)
    ok(cloud.run("pin"))
    cloud.deploy("ion-chat", "chat-2", takes_traffic=False, cpu_boost=True)
    ok(cloud.run("candidate"))
    assert cloud.updates() == [BOOST_OFF + NO_TRAFFIC]
    assert cloud.annotations("ion-chat", "ion-chat-00003") == {BOOST: "false"}
    assert cloud.load()["services"]["ion-chat"]["tags"] == {"candidate": "ion-chat-00003"}
    assert cloud.traffic("ion-chat") == {"chat-1": 100}


def test_turning_boost_on_without_new_code_rolls_out_a_boosted_candidate(
    cloud: FakeCloud,
) -> None:
    # A tfvars change of startup_cpu_boost alone changes no function, so the apply makes no
    # revision; the boost still reaches learners through the canary.
    cloud.deploy("ion-chat", "chat-1", takes_traffic=True)
    ok(cloud.run("pin"))
    cloud.boost_in_terraform("ion-chat", "ion-persona-route")
    out = ok(cloud.run("candidate"))
    assert "no new revision" not in out
    assert cloud.updates() == [BOOST_ON + NO_TRAFFIC]
    assert cloud.load()["services"]["ion-chat"]["tags"] == {"candidate": "ion-chat-00002"}
    assert cloud.traffic("ion-chat") == {"chat-1": 100}
    ok(cloud.run("canary", "10"))
    assert cloud.traffic("ion-chat") == {"ion-chat-00002": 10, "chat-1": 90}


def test_first_deployment_is_boosted_before_it_is_promoted(cloud: FakeCloud) -> None:
    cloud.boost_in_terraform("ion-chat", "ion-persona-route")
    ok(cloud.run("pin"))
    cloud.deploy("ion-chat", "chat-1", takes_traffic=True)
    ok(cloud.run("candidate"))
    assert cloud.updates() == [BOOST_ON + NO_TRAFFIC]
    assert cloud.load()["services"]["ion-chat"]["tags"] == {"candidate": "ion-chat-00002"}
    assert cloud.traffic("ion-chat") == {"chat-1": 100}
    ok(cloud.run("promote"))
    assert cloud.traffic("ion-chat") == {"ion-chat-00002": 100}
    assert cloud.annotations("ion-chat", "ion-chat-00002") == {BOOST: "true"}


def test_every_listed_service_is_boosted(cloud: FakeCloud) -> None:
    cloud.boost_in_terraform("ion-chat", "ion-persona-route")
    services = "ion-chat ion-persona-route"
    cloud.deploy("ion-chat", "chat-1", takes_traffic=True, cpu_boost=True)
    cloud.deploy("ion-persona-route", "route-1", takes_traffic=True)
    ok(cloud.run("pin", SERVICES=services))
    ok(cloud.run("candidate", SERVICES=services))
    assert cloud.updates() == [
        [
            "run",
            "services",
            "update",
            "ion-persona-route",
            "--region=us-central1",
            "--cpu-boost",
            *NO_TRAFFIC,
        ]
    ]
    assert cloud.load()["services"]["ion-chat"]["tags"] == {}
    assert cloud.load()["services"]["ion-persona-route"]["tags"] == {
        "candidate": "ion-persona-route-00002"
    }


def test_the_setting_may_come_from_the_environment(cloud: FakeCloud) -> None:
    cloud.deploy("ion-chat", "chat-1", takes_traffic=True)
    ok(cloud.run("pin"))
    cloud.deploy("ion-chat", "chat-2", takes_traffic=False)
    ok(cloud.run("candidate", CPU_BOOST_FILE="/nonexistent.json", CPU_BOOST_SERVICES="ion-chat"))
    assert cloud.updates() == [BOOST_ON + NO_TRAFFIC]


def test_no_setting_fails_the_candidate_step_before_any_change(cloud: FakeCloud) -> None:
    cloud.deploy("ion-chat", "chat-1", takes_traffic=True)
    ok(cloud.run("pin"))
    cloud.deploy("ion-chat", "chat-2", takes_traffic=False)
    result = cloud.run("candidate", CPU_BOOST_FILE="/nonexistent.json")
    assert result.returncode == 1
    assert result.stderr == (
        "no startup CPU boost setting: /nonexistent.json is missing"
        " (terraform output -json startup_cpu_boost_services)\n"
    )
    assert cloud.updates() == []
    assert cloud.load()["services"]["ion-chat"]["tags"] == {}


def test_a_malformed_setting_fails_the_candidate_step(cloud: FakeCloud) -> None:
    cloud.deploy("ion-chat", "chat-1", takes_traffic=True)
    ok(cloud.run("pin"))
    cloud.boost_file.write_text('{"ion-chat": true}', encoding="utf-8")
    result = cloud.run("candidate")
    assert result.returncode == 1
    assert result.stderr == (
        f"{cloud.boost_file}: expected a JSON list of service names, got {{'ion-chat': True}}\n"
    )
    assert cloud.updates() == []
    assert cloud.load()["services"]["ion-chat"]["tags"] == {}
