# Monitoring: log-based metrics, alert policies (to alert_emails) and the dashboard.

resource "google_monitoring_notification_channel" "email" {
  count = length(var.alert_emails)

  display_name = "ION alerts (${var.alert_emails[count.index]})"
  type         = "email"
  labels = {
    email_address = var.alert_emails[count.index]
  }
}

locals {
  notification_channels = google_monitoring_notification_channel.email[*].id
  http_services         = "resource.labels.service_name = one_of(\"${local.function_names.chat}\", \"${local.function_names.persona_route}\")"
}

# Each failed or skipped Gemini attempt (the adapter logs one WARNING per attempt), and
# each answer that could not be given at all (error code llm_unavailable).
resource "google_logging_metric" "llm_failures" {
  name        = "ion/llm_failures"
  description = "Failed Gemini attempts and chat answers that failed with llm_unavailable."
  filter      = <<-EOT
    resource.type="cloud_run_revision"
    resource.labels.service_name="${local.function_names.chat}"
    (jsonPayload.message=~"^gemini \\S+ (unusable|attempt [0-9]+ failed)" OR jsonPayload.code="llm_unavailable" OR textPayload=~"gemini \\S+ (unusable|attempt [0-9]+ failed)")
  EOT

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
  }
}

# Requests answered 429 (per-user rate limits), from Cloud Run's request logs.
resource "google_logging_metric" "rate_limited" {
  name        = "ion/rate_limited"
  description = "Requests rejected with 429 by the per-user rate limits."
  filter      = <<-EOT
    resource.type="cloud_run_revision"
    log_id("run.googleapis.com/requests")
    httpRequest.status=429
  EOT

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
    labels {
      key         = "service"
      value_type  = "STRING"
      description = "Function (Cloud Run service) name."
    }
  }
  label_extractors = {
    service = "EXTRACT(resource.labels.service_name)"
  }
}

# A backup that failed: an error logged by the backup function, or a scheduler run that
# could not publish its request.
resource "google_logging_metric" "backup_failures" {
  name        = "ion/backup_failures"
  description = "Errors of the backup function and failed runs of the backup scheduler job."
  filter      = <<-EOT
    (resource.type="cloud_run_revision" AND resource.labels.service_name="${local.function_names.backup}" AND severity>=ERROR)
    OR (resource.type="cloud_scheduler_job" AND resource.labels.job_id="${google_cloud_scheduler_job.backup.name}" AND severity>=ERROR)
  EOT

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
  }
}

# An event that could be neither published nor stored in the outbox (docs/events.md).
resource "google_logging_metric" "events_lost" {
  name        = "ion/events_lost"
  description = "Domain events lost after publishing and the outbox both failed."
  filter      = <<-EOT
    resource.type="cloud_run_revision"
    (jsonPayload.message=~"^event \\S+ LOST" OR textPayload=~"event \\S+ LOST")
  EOT

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
  }
}

# A learner message the crisis detector fired on (the chat function logs one WARNING per
# detection, never the text; docs/safety.md). Each one needs a human: docs/operations.md.
resource "google_logging_metric" "crisis_detected" {
  name        = "ion/crisis_detected"
  description = "Learner messages the crisis detector fired on (a human follows up)."
  filter      = <<-EOT
    resource.type="cloud_run_revision"
    resource.labels.service_name="${local.function_names.chat}"
    (jsonPayload.message=~"^crisis detected:" OR textPayload=~"crisis detected:")
  EOT

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
  }
}

resource "google_monitoring_alert_policy" "http_5xx" {
  display_name          = "ION: 5xx rate above ${var.alert_5xx_ratio * 100}%"
  combiner              = "OR"
  notification_channels = local.notification_channels

  conditions {
    display_name = "Share of 5xx responses per function"
    condition_threshold {
      filter             = "metric.type=\"run.googleapis.com/request_count\" AND resource.type=\"cloud_run_revision\" AND metric.labels.response_code_class=\"5xx\" AND ${local.http_services}"
      denominator_filter = "metric.type=\"run.googleapis.com/request_count\" AND resource.type=\"cloud_run_revision\" AND ${local.http_services}"
      comparison         = "COMPARISON_GT"
      threshold_value    = var.alert_5xx_ratio
      duration           = "300s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["resource.label.service_name"]
      }
      denominator_aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["resource.label.service_name"]
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "Many requests fail with 5xx. Check the function's logs (request_id) and /ready; roll back with the command in docs/deploy.md if a new revision caused it."
  }
}

resource "google_monitoring_alert_policy" "latency_p95" {
  display_name          = "ION: p95 latency too high"
  combiner              = "OR"
  notification_channels = local.notification_channels

  conditions {
    display_name = "chat p95 above ${var.alert_chat_p95_ms} ms"
    condition_threshold {
      filter          = "metric.type=\"run.googleapis.com/request_latencies\" AND resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${local.function_names.chat}\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.alert_chat_p95_ms
      duration        = "600s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_PERCENTILE_95"
        group_by_fields      = ["resource.label.service_name"]
      }
    }
  }

  conditions {
    display_name = "persona_route p95 above ${var.alert_route_p95_ms} ms"
    condition_threshold {
      filter          = "metric.type=\"run.googleapis.com/request_latencies\" AND resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${local.function_names.persona_route}\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.alert_route_p95_ms
      duration        = "600s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_PERCENTILE_95"
        group_by_fields      = ["resource.label.service_name"]
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "Latency is high. For chat, check Gemini (ion/llm_failures) first; for both, Firestore latency and instance saturation (max instances, concurrency)."
  }
}

resource "google_monitoring_alert_policy" "llm_failures" {
  display_name          = "ION: Gemini failures"
  combiner              = "OR"
  notification_channels = local.notification_channels

  conditions {
    display_name = "More than ${var.alert_llm_failures} failed Gemini attempts in 5 minutes"
    condition_threshold {
      filter          = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.llm_failures.name}\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.alert_llm_failures
      duration        = "0s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "Gemini calls fail (quota, outage, bad key). Learners get 503 llm_unavailable. Check the chat logs for the reason and the key in Secret Manager (ion-gemini-api-key)."
  }
}

resource "google_monitoring_alert_policy" "crisis_detected" {
  display_name          = "ION: learner in crisis"
  combiner              = "OR"
  notification_channels = local.notification_channels

  conditions {
    display_name = "A learner message was detected as a crisis"
    condition_threshold {
      filter          = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.crisis_detected.name}\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  alert_strategy {
    auto_close = "1800s"
  }

  documentation {
    mime_type = "text/markdown"
    content   = "A learner's message was detected as a crisis and got the safe answer with crisis resources. Follow the crisis runbook in docs/operations.md now: the on-call safety lead opens the conversation id from the `crisis detected` log line (or the safety.crisis_detected event) with the ion-safety-reviewer role and follows up within the hour."
  }
}

resource "google_monitoring_alert_policy" "rate_limited" {
  display_name          = "ION: rate-limit spike"
  combiner              = "OR"
  notification_channels = local.notification_channels

  conditions {
    display_name = "More than ${var.alert_rate_limited} requests answered 429 in 5 minutes"
    condition_threshold {
      filter          = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.rate_limited.name}\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.alert_rate_limited
      duration        = "0s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "Many requests hit the per-user rate limits: an abusive client or a client retry loop. Look up the user_hash in the logs of 429 answers."
  }
}

resource "google_monitoring_alert_policy" "backup_failure" {
  display_name          = "ION: backup failed"
  combiner              = "OR"
  notification_channels = local.notification_channels

  conditions {
    display_name = "Backup function or scheduler job logged an error"
    condition_threshold {
      filter          = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.backup_failures.name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period     = "600s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  conditions {
    display_name = "Backup request dead-lettered"
    condition_threshold {
      filter          = "metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\" AND resource.type=\"pubsub_subscription\" AND resource.labels.subscription_id=\"${google_pubsub_subscription.dead_letter_hold["backup"].name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period   = "600s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "Last night's Firestore export did not start or failed. Check the ion-backup logs, then run it by hand: gcloud scheduler jobs run ion-backup --location=REGION (docs/deploy.md)."
  }
}

resource "google_monitoring_alert_policy" "events" {
  display_name          = "ION: domain events lost or dead-lettered"
  combiner              = "OR"
  notification_channels = local.notification_channels

  conditions {
    display_name = "An event was lost (publish and outbox both failed)"
    condition_threshold {
      filter          = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.events_lost.name}\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  conditions {
    display_name = "Events dead-lettered by persona_events"
    condition_threshold {
      filter          = "metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\" AND resource.type=\"pubsub_subscription\" AND resource.labels.subscription_id=\"${google_pubsub_subscription.dead_letter_hold["persona_events"].name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "Events could not be delivered. A LOST log line holds the envelope to re-publish; dead letters wait in the -dead-letter-hold subscription (docs/deploy.md)."
  }
}

resource "google_monitoring_dashboard" "ion" {
  dashboard_json = jsonencode({
    displayName = "ION Mentoring"
    mosaicLayout = {
      columns = 12
      tiles = [
        for index, widget in [
          {
            title = "Requests per function (per second)"
            xyChart = { dataSets = [{
              plotType = "LINE"
              timeSeriesQuery = { timeSeriesFilter = {
                filter      = "metric.type=\"run.googleapis.com/request_count\" AND resource.type=\"cloud_run_revision\""
                aggregation = { alignmentPeriod = "60s", perSeriesAligner = "ALIGN_RATE", crossSeriesReducer = "REDUCE_SUM", groupByFields = ["resource.label.service_name"] }
              } }
            }] }
          },
          {
            title = "5xx responses per function (per second)"
            xyChart = { dataSets = [{
              plotType = "LINE"
              timeSeriesQuery = { timeSeriesFilter = {
                filter      = "metric.type=\"run.googleapis.com/request_count\" AND resource.type=\"cloud_run_revision\" AND metric.labels.response_code_class=\"5xx\""
                aggregation = { alignmentPeriod = "60s", perSeriesAligner = "ALIGN_RATE", crossSeriesReducer = "REDUCE_SUM", groupByFields = ["resource.label.service_name"] }
              } }
            }] }
          },
          {
            title = "p95 latency per function (ms)"
            xyChart = { dataSets = [{
              plotType = "LINE"
              timeSeriesQuery = { timeSeriesFilter = {
                filter      = "metric.type=\"run.googleapis.com/request_latencies\" AND resource.type=\"cloud_run_revision\""
                aggregation = { alignmentPeriod = "60s", perSeriesAligner = "ALIGN_DELTA", crossSeriesReducer = "REDUCE_PERCENTILE_95", groupByFields = ["resource.label.service_name"] }
              } }
            }] }
          },
          {
            title = "Gemini failures"
            xyChart = { dataSets = [{
              plotType = "STACKED_BAR"
              timeSeriesQuery = { timeSeriesFilter = {
                filter      = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.llm_failures.name}\" AND resource.type=\"cloud_run_revision\""
                aggregation = { alignmentPeriod = "300s", perSeriesAligner = "ALIGN_DELTA", crossSeriesReducer = "REDUCE_SUM" }
              } }
            }] }
          },
          {
            title = "Rate-limited requests (429)"
            xyChart = { dataSets = [{
              plotType = "STACKED_BAR"
              timeSeriesQuery = { timeSeriesFilter = {
                filter      = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.rate_limited.name}\" AND resource.type=\"cloud_run_revision\""
                aggregation = { alignmentPeriod = "300s", perSeriesAligner = "ALIGN_DELTA", crossSeriesReducer = "REDUCE_SUM", groupByFields = ["metric.label.service"] }
              } }
            }] }
          },
          {
            title = "Backup failures and dead letters"
            xyChart = { dataSets = [
              {
                plotType = "STACKED_BAR"
                timeSeriesQuery = { timeSeriesFilter = {
                  filter      = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.backup_failures.name}\""
                  aggregation = { alignmentPeriod = "3600s", perSeriesAligner = "ALIGN_DELTA", crossSeriesReducer = "REDUCE_SUM" }
                } }
              },
              {
                plotType = "LINE"
                timeSeriesQuery = { timeSeriesFilter = {
                  filter      = "metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\" AND resource.type=\"pubsub_subscription\""
                  aggregation = { alignmentPeriod = "300s", perSeriesAligner = "ALIGN_MAX", crossSeriesReducer = "REDUCE_MAX", groupByFields = ["resource.label.subscription_id"] }
                } }
              },
            ] }
          },
          {
            title = "Instances per function"
            xyChart = { dataSets = [{
              plotType = "LINE"
              timeSeriesQuery = { timeSeriesFilter = {
                filter      = "metric.type=\"run.googleapis.com/container/instance_count\" AND resource.type=\"cloud_run_revision\""
                aggregation = { alignmentPeriod = "60s", perSeriesAligner = "ALIGN_MAX", crossSeriesReducer = "REDUCE_SUM", groupByFields = ["resource.label.service_name"] }
              } }
            }] }
          },
          ] : {
          xPos   = (index % 2) * 6
          yPos   = floor(index / 2) * 4
          width  = 6
          height = 4
          widget = widget
        }
      ]
    }
  })
}
