# Reliability targets as code: a custom service for the chat API, its SLOs, multi-window
# burn-rate alerts, and uptime checks of every public API through the load balancer.

resource "google_monitoring_custom_service" "chat" {
  service_id   = "ion-chat"
  display_name = "ION chat API"
}

locals {
  # The chat function's request lines (jsonPayload.status: one per answered request, in
  # every region) and the answers that are Gemini's own 503 (jsonPayload.code).
  chat_request_lines = <<-EOT
    resource.type="cloud_run_revision"
    resource.labels.service_name="${local.function_names.chat}"
    jsonPayload.status>=100
  EOT
  llm_unavailable    = "jsonPayload.status=503 AND jsonPayload.code=\"llm_unavailable\""

  # Counters feeding the SLOs (ion/<key>, google_logging_metric.counter in monitoring.tf),
  # from the chat function's request lines.
  slo_counters = {
    chat_requests = {
      description = "Chat requests answered (every region)."
      filter      = local.chat_request_lines
    }
    chat_server_errors = {
      description = "Chat requests answered 5xx by our own code or platform, not Gemini's 503 llm_unavailable."
      filter      = "${local.chat_request_lines}jsonPayload.status>=500\nNOT (${local.llm_unavailable})\n"
    }
    chat_llm_unavailable = {
      description = "Chat requests answered 503 llm_unavailable (Gemini unreachable after retries and fallback)."
      filter      = "${local.chat_request_lines}${local.llm_unavailable}\n"
    }
  }

  slo_metric = { for key in keys(local.slo_counters) : key => "metric.type=\"logging.googleapis.com/user/ion/${key}\" resource.type=\"cloud_run_revision\"" }

  # Burn-rate windows (Google SRE workbook, "multiwindow, multi-burn-rate alerts"): an alert
  # fires only while both its long and its short window burn the budget that fast, so it
  # starts quickly and stops soon after the burn does.
  burn_rate_alerts = {
    fast = {
      display_name = "ION: chat error budget burning fast"
      long         = "3600s"
      short        = "300s"
      rate         = 14.4 # 2 % of a 28-day budget in one hour
      urgency      = "Page: at this rate the month's error budget is gone in two days."
    }
    slow = {
      display_name = "ION: chat error budget burning"
      long         = "21600s"
      short        = "1800s"
      rate         = 6 # 5 % of the budget in six hours
      urgency      = "Ticket: at this rate the month's error budget is gone in five days."
    }
  }
}

# Time from the chat request to its first SSE event (`meta`), from the chat function's
# `time_to_meta_ms` log field.
resource "google_logging_metric" "chat_time_to_meta" {
  name            = "ion/chat_time_to_meta"
  description     = "Milliseconds from a chat request to its first SSE event (meta)."
  filter          = <<-EOT
    resource.type="cloud_run_revision"
    resource.labels.service_name="${local.function_names.chat}"
    jsonPayload.time_to_meta_ms>=0
  EOT
  value_extractor = "EXTRACT(jsonPayload.time_to_meta_ms)"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "DISTRIBUTION"
    unit        = "ms"
  }

  bucket_options {
    exponential_buckets {
      num_finite_buckets = 40
      growth_factor      = 1.3
      scale              = 10
    }
  }
}

locals {
  # Request-ratio SLOs of the chat API: a bad count over all requests. Gemini's own 503 is
  # counted apart from ours (llm), so an outage of the model shows as what it is.
  ratio_slos = {
    availability = {
      slo_id       = "chat-availability"
      display_name = "Chat: ${var.slo_availability_goal * 100} % of requests without a 5xx of ours (28 days)"
      goal         = var.slo_availability_goal
      bad          = "chat_server_errors"
    }
    llm = {
      slo_id       = "chat-llm-available"
      display_name = "Chat: ${var.slo_llm_goal * 100} % of requests not answered llm_unavailable (28 days)"
      goal         = var.slo_llm_goal
      bad          = "chat_llm_unavailable"
    }
  }
}

resource "google_monitoring_slo" "chat_ratio" {
  for_each = local.ratio_slos

  service             = google_monitoring_custom_service.chat.service_id
  slo_id              = each.value.slo_id
  display_name        = each.value.display_name
  goal                = each.value.goal
  rolling_period_days = 28

  request_based_sli {
    good_total_ratio {
      bad_service_filter   = local.slo_metric[each.value.bad]
      total_service_filter = local.slo_metric["chat_requests"]
    }
  }

  depends_on = [google_logging_metric.counter]
}

resource "google_monitoring_slo" "chat_latency" {
  service             = google_monitoring_custom_service.chat.service_id
  slo_id              = "chat-time-to-meta"
  display_name        = "Chat: ${var.slo_latency_goal * 100} % of turns send meta within ${var.slo_latency_threshold_ms} ms (28 days)"
  goal                = var.slo_latency_goal
  rolling_period_days = 28

  request_based_sli {
    distribution_cut {
      distribution_filter = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.chat_time_to_meta.name}\" resource.type=\"cloud_run_revision\""
      range {
        max = var.slo_latency_threshold_ms
      }
    }
  }
}

resource "google_monitoring_alert_policy" "burn_rate" {
  for_each = local.burn_rate_alerts

  display_name          = each.value.display_name
  combiner              = "AND"
  notification_channels = local.notification_channels

  dynamic "conditions" {
    for_each = { long = each.value.long, short = each.value.short }
    content {
      display_name = "Availability burn rate over ${conditions.value} above ${each.value.rate}"
      condition_threshold {
        filter          = "select_slo_burn_rate(\"${google_monitoring_slo.chat_ratio["availability"].name}\", \"${conditions.value}\")"
        comparison      = "COMPARISON_GT"
        threshold_value = each.value.rate
        duration        = "0s"
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "${each.value.urgency} Chat requests fail with 5xx of our own (Gemini's llm_unavailable is not counted here). docs/troubleshooting.md, \"Error budget burning\"."
  }
}

# Every public API, checked from several continents through the load balancer, Cloud Armor
# and the managed certificate: /_health/<api> is rewritten to that function's /health.
resource "google_monitoring_uptime_check_config" "edge" {
  for_each = local.health_paths

  display_name = "ION ${each.key} /health through the load balancer"
  timeout      = "10s"
  period       = "60s"

  http_check {
    path           = each.value
    port           = 443
    use_ssl        = true
    validate_ssl   = true
    request_method = "GET"
  }

  monitored_resource {
    type = "uptime_url"
    labels = {
      project_id = var.project_id
      host       = var.edge_domains[0]
    }
  }
}

resource "google_monitoring_alert_policy" "uptime" {
  display_name          = "ION: API unreachable through the load balancer"
  combiner              = "OR"
  notification_channels = local.notification_channels

  dynamic "conditions" {
    for_each = google_monitoring_uptime_check_config.edge
    content {
      display_name = "${conditions.key} /health fails from two or more checker regions"
      condition_threshold {
        filter          = "metric.type=\"monitoring.googleapis.com/uptime_check/check_passed\" AND resource.type=\"uptime_url\" AND metric.labels.check_id=\"${conditions.value.uptime_check_id}\""
        comparison      = "COMPARISON_GT"
        threshold_value = 1
        duration        = "120s"

        aggregations {
          alignment_period     = "300s"
          per_series_aligner   = "ALIGN_NEXT_OLDER"
          cross_series_reducer = "REDUCE_COUNT_FALSE"
          group_by_fields      = ["resource.label.host"]
        }
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "An API's /health fails through the load balancer from several places. docs/troubleshooting.md, \"API unreachable\"."
  }
}
