# Monitoring: notification channels, log-based metrics and alert policies (SLOs and
# uptime checks: slo.tf; the dashboard: dashboard.tf).

resource "google_monitoring_notification_channel" "email" {
  count = length(var.alert_emails)

  display_name = "ION alerts (${var.alert_emails[count.index]})"
  type         = "email"
  labels = {
    email_address = var.alert_emails[count.index]
  }
}

# Optional: every alert also goes to a webhook (the URL is sensitive: it usually holds the
# token, and lands in the state bucket only).
resource "google_monitoring_notification_channel" "webhook" {
  count = var.alert_webhook_url == "" ? 0 : 1

  display_name = "ION alerts (webhook)"
  type         = "webhook_tokenauth"
  labels = {
    url = var.alert_webhook_url
  }
}

locals {
  # Email, the optional webhook, and channels made outside Terraform (Slack).
  notification_channels = concat(
    google_monitoring_notification_channel.email[*].id,
    google_monitoring_notification_channel.webhook[*].id,
    var.alert_extra_channels,
  )
  http_services = "resource.labels.service_name = one_of(\"${local.function_names.chat}\", \"${local.function_names.persona_route}\")"

  # Log-based metrics that count matching log lines, by metric name (ion/<key>).
  log_counters = {
    # Each failed or skipped Gemini attempt (the adapter logs one WARNING per attempt), and
    # each answer that could not be given at all (error code llm_unavailable).
    llm_failures = {
      description = "Failed Gemini attempts and chat answers that failed with llm_unavailable."
      filter      = <<-EOT
        resource.type="cloud_run_revision"
        resource.labels.service_name="${local.function_names.chat}"
        (jsonPayload.message=~"^gemini [^ ]+ (unusable|attempt [0-9]+ failed)" OR jsonPayload.code="llm_unavailable" OR textPayload=~"gemini [^ ]+ (unusable|attempt [0-9]+ failed)")
      EOT
    }
    # A backup that failed: an error logged by the backup function, or a scheduler run that
    # could not publish its request.
    backup_failures = {
      description = "Errors of the backup function and failed runs of the backup scheduler job."
      filter      = <<-EOT
        (resource.type="cloud_run_revision" AND resource.labels.service_name="${local.function_names.backup}" AND severity>=ERROR)
        OR (resource.type="cloud_scheduler_job" AND resource.labels.job_id="${google_cloud_scheduler_job.backup.name}" AND severity>=ERROR)
      EOT
    }
    # An event that could be neither published nor stored in the outbox (docs/events.md).
    events_lost = {
      description = "Domain events lost after publishing and the outbox both failed."
      filter      = <<-EOT
        resource.type="cloud_run_revision"
        (jsonPayload.message=~"^event [^ ]+ LOST" OR textPayload=~"event [^ ]+ LOST")
      EOT
    }
    # A learner message the crisis detector fired on (the chat function logs one WARNING per
    # detection, never the text; docs/safety.md). Each one needs a human: docs/operations.md.
    crisis_detected = {
      description = "Learner messages the crisis detector fired on (a human follows up)."
      filter      = <<-EOT
        resource.type="cloud_run_revision"
        resource.labels.service_name="${local.function_names.chat}"
        (jsonPayload.message=~"^crisis detected:" OR textPayload=~"crisis detected:")
      EOT
    }
  }
}

resource "google_logging_metric" "counter" {
  for_each = merge(local.log_counters, local.slo_counters)

  name        = "ion/${each.key}"
  description = each.value.description
  filter      = each.value.filter

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

  # One condition per public function, with its own threshold (ms).
  dynamic "conditions" {
    for_each = {
      chat          = var.alert_chat_p95_ms
      persona_route = var.alert_route_p95_ms
    }
    content {
      display_name = "${conditions.key} p95 above ${conditions.value} ms"
      condition_threshold {
        filter          = "metric.type=\"run.googleapis.com/request_latencies\" AND resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${local.function_names[conditions.key]}\""
        comparison      = "COMPARISON_GT"
        threshold_value = conditions.value
        duration        = "600s"

        aggregations {
          alignment_period     = "300s"
          per_series_aligner   = "ALIGN_DELTA"
          cross_series_reducer = "REDUCE_PERCENTILE_95"
          group_by_fields      = ["resource.label.service_name"]
        }
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "Latency is high. For chat, check Gemini (ion/llm_failures) first; for both, Firestore latency and instance saturation (max instances, concurrency)."
  }
}

locals {
  # Alerts on a log-based metric: more than `threshold` matching lines in one alignment
  # period. `dead_letter_hold`, where set, adds a second condition: any message waiting in
  # that dead-letter subscription (a push Pub/Sub gave up on).
  log_alerts = {
    llm_failures = {
      display_name     = "ION: Gemini failures"
      condition        = "More than ${var.alert_llm_failures} failed Gemini attempts in 5 minutes"
      filter           = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.counter["llm_failures"].name}\" AND resource.type=\"cloud_run_revision\""
      threshold        = var.alert_llm_failures
      alignment_period = "300s"
      dead_letter_hold = null
      auto_close       = null
      documentation    = "Gemini calls fail (quota, outage, bad key). Learners get 503 llm_unavailable. Check the chat logs for the reason and the key in Secret Manager (ion-gemini-api-key)."
    }
    crisis_detected = {
      display_name     = "ION: learner in crisis"
      condition        = "A learner message was detected as a crisis"
      filter           = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.counter["crisis_detected"].name}\" AND resource.type=\"cloud_run_revision\""
      threshold        = 0
      alignment_period = "60s"
      dead_letter_hold = null
      auto_close       = "1800s"
      documentation    = "A learner's message was detected as a crisis and got the safe answer with crisis resources. Follow the crisis runbook in docs/operations.md now: the on-call safety lead opens the conversation id from the `crisis detected` log line (or the safety.crisis_detected event) with the ion-safety-reviewer role and follows up within the hour."
    }
    rate_limited = {
      display_name     = "ION: rate-limit spike"
      condition        = "More than ${var.alert_rate_limited} requests answered 429 in 5 minutes"
      filter           = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.rate_limited.name}\" AND resource.type=\"cloud_run_revision\""
      threshold        = var.alert_rate_limited
      alignment_period = "300s"
      dead_letter_hold = null
      auto_close       = null
      documentation    = "Many requests hit the per-user rate limits: an abusive client or a client retry loop. Look up the user_hash in the logs of 429 answers."
    }
    backup_failure = {
      display_name = "ION: backup failed"
      condition    = "Backup function or scheduler job logged an error"
      # No resource type: the metric also counts the scheduler job's errors.
      filter           = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.counter["backup_failures"].name}\""
      threshold        = 0
      alignment_period = "600s"
      dead_letter_hold = {
        condition    = "Backup request dead-lettered"
        subscription = google_pubsub_subscription.dead_letter_hold["backup"].name
      }
      auto_close    = null
      documentation = "Last night's Firestore export did not start or failed. Check the ion-backup logs, then run it by hand: gcloud scheduler jobs run ion-backup --location=REGION (docs/deploy.md)."
    }
    events = {
      display_name     = "ION: domain events lost or dead-lettered"
      condition        = "An event was lost (publish and outbox both failed)"
      filter           = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.counter["events_lost"].name}\" AND resource.type=\"cloud_run_revision\""
      threshold        = 0
      alignment_period = "300s"
      dead_letter_hold = {
        condition    = "Events dead-lettered by persona_events"
        subscription = google_pubsub_subscription.dead_letter_hold["persona_events"].name
      }
      auto_close    = null
      documentation = "Events could not be delivered. A LOST log line holds the envelope to re-publish; dead letters wait in the -dead-letter-hold subscription (docs/deploy.md)."
    }
  }
}

resource "google_monitoring_alert_policy" "log_metric" {
  for_each = local.log_alerts

  display_name          = each.value.display_name
  combiner              = "OR"
  notification_channels = local.notification_channels

  conditions {
    display_name = each.value.condition
    condition_threshold {
      filter          = each.value.filter
      comparison      = "COMPARISON_GT"
      threshold_value = each.value.threshold
      duration        = "0s"

      aggregations {
        alignment_period     = each.value.alignment_period
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  dynamic "conditions" {
    for_each = each.value.dead_letter_hold == null ? [] : [each.value.dead_letter_hold]
    content {
      display_name = conditions.value.condition
      condition_threshold {
        filter          = "metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\" AND resource.type=\"pubsub_subscription\" AND resource.labels.subscription_id=\"${conditions.value.subscription}\""
        comparison      = "COMPARISON_GT"
        threshold_value = 0
        duration        = "0s"

        aggregations {
          alignment_period   = each.value.alignment_period
          per_series_aligner = "ALIGN_MAX"
        }
      }
    }
  }

  # Where set (crisis): the incident closes itself after that long without a new detection.
  dynamic "alert_strategy" {
    for_each = each.value.auto_close == null ? [] : [each.value.auto_close]
    content {
      auto_close = alert_strategy.value
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = each.value.documentation
  }
}
