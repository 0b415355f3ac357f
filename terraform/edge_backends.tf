# The load balancer's backends (edge.tf routes to them): each public API's Cloud Run
# service in every region, and each region's `candidate` revision for the deploy's smoke
# test.
#
# The smoke test (scripts/rollout.sh smoke, cloudbuild.yaml) checks a new revision before it
# takes any traffic. The functions accept requests from the load balancer only (ingress
# internal-and-cloud-load-balancing), so it goes through the whole edge:
# /_candidate/<region>/<entry point>/<path> reaches <path> of the revision tagged
# `candidate` in that region (the URL map rewrites the prefix away), and the `candidate`
# Cloud Armor rule lets through only the smoke test's GETs.

# One serverless NEG per API and region, pointing at that region's Cloud Run service (the
# gen2 function underneath, same name).
resource "google_compute_region_network_endpoint_group" "http" {
  for_each = local.http_deployments

  name                  = "${local.function_names[each.value.entry_point]}-${each.value.region}"
  region                = each.value.region
  network_endpoint_type = "SERVERLESS"

  cloud_run {
    service = module.http_function[each.key].service
  }
}

# One backend service per API with a backend in every region: the load balancer sends a
# caller to the nearest region that has capacity and fails over when one is down.
resource "google_compute_backend_service" "http" {
  for_each = local.http_functions

  name                  = local.function_names[each.key]
  description           = each.value.description
  protocol              = "HTTPS"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  security_policy       = google_compute_security_policy.edge.id

  dynamic "backend" {
    for_each = toset(var.http_regions)
    content {
      group = google_compute_region_network_endpoint_group.http["${each.key}-${backend.value}"].id
    }
  }

  # A region answering errors in a row is taken out of rotation for a while, so callers fail
  # over to the other regions; at most half of them at once (Gemini's own 503s come from
  # every region alike, and ejecting them all would help no one).
  outlier_detection {
    consecutive_errors   = 5
    max_ejection_percent = 50
    interval {
      seconds = 10
    }
    base_ejection_time {
      seconds = 30
    }
  }

  log_config {
    enable      = true
    sample_rate = 1
  }
}

locals {
  candidate_paths = {
    for key, deployment in local.http_deployments :
    key => "/_candidate/${deployment.region}/${deployment.entry_point}"
  }
}

# The revision tagged `candidate` of each API in each region (scripts/rollout.sh tags a new
# revision while it has no traffic).
resource "google_compute_region_network_endpoint_group" "candidate" {
  for_each = local.http_deployments

  name                  = "${local.function_names[each.value.entry_point]}-${each.value.region}-candidate"
  region                = each.value.region
  network_endpoint_type = "SERVERLESS"

  cloud_run {
    service = module.http_function[each.key].service
    tag     = "candidate"
  }
}

resource "google_compute_backend_service" "candidate" {
  for_each = local.http_deployments

  name                  = "${local.function_names[each.value.entry_point]}-${each.value.region}-candidate"
  description           = "Smoke tests of the candidate revision in ${each.value.region} (scripts/rollout.sh)."
  protocol              = "HTTPS"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  security_policy       = google_compute_security_policy.edge.id

  backend {
    group = google_compute_region_network_endpoint_group.candidate[each.key].id
  }

  log_config {
    enable      = true
    sample_rate = 1
  }
}
