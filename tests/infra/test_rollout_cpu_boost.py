"""Startup CPU boost: Terraform decides (variable startup_cpu_boost, output
startup_cpu_boost_services)."""

from __future__ import annotations

from typing import Any

from tests.infra.test_cloudbuild import build
from tests.infra.test_terraform_contract import (
    MODULE,
    PUBLIC_HTTP,
    TF,
    load_dir,
    locals_,
    modules,
    variables,
)


def outputs(directory: Any = TF) -> dict[str, dict[str, Any]]:
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
