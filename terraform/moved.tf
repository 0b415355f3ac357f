# Addresses from before the functions, push subscriptions, metrics and alerts were written
# as for_each: these blocks make Terraform move the existing objects in the state instead
# of destroying and recreating them. Remove them once every deployment has applied them.

# Functions (functions.tf). The public APIs then gained a region key: the instances
# deployed before multi-region are those of the default primary region, us-central1 (with
# another region, `terraform state mv` them by hand, docs/deploy.md).
moved {
  from = module.http_function["chat"]
  to   = module.http_function["chat-us-central1"]
}

moved {
  from = module.http_function["persona_route"]
  to   = module.http_function["persona_route-us-central1"]
}

moved {
  from = module.chat
  to   = module.http_function["chat"]
}

moved {
  from = module.persona_route
  to   = module.http_function["persona_route"]
}

moved {
  from = module.persona_events
  to   = module.event_function["persona_events"]
}

moved {
  from = module.backup
  to   = module.event_function["backup"]
}

# Service accounts (iam.tf).
moved {
  from = google_service_account.chat
  to   = google_service_account.function["chat"]
}

moved {
  from = google_service_account.persona_route
  to   = google_service_account.function["persona_route"]
}

moved {
  from = google_service_account.persona_events
  to   = google_service_account.function["persona_events"]
}

moved {
  from = google_service_account.backup
  to   = google_service_account.function["backup"]
}

# Pub/Sub (pubsub.tf, iam.tf).
moved {
  from = google_pubsub_subscription.persona_events
  to   = google_pubsub_subscription.push["persona_events"]
}

moved {
  from = google_pubsub_subscription.backup
  to   = google_pubsub_subscription.push["backup"]
}

moved {
  from = google_pubsub_topic.events_dead_letter
  to   = google_pubsub_topic.dead_letter["persona_events"]
}

moved {
  from = google_pubsub_topic.backup_dead_letter
  to   = google_pubsub_topic.dead_letter["backup"]
}

moved {
  from = google_pubsub_subscription.events_dead_letter
  to   = google_pubsub_subscription.dead_letter_hold["persona_events"]
}

moved {
  from = google_pubsub_subscription.backup_dead_letter
  to   = google_pubsub_subscription.dead_letter_hold["backup"]
}

moved {
  from = google_pubsub_topic_iam_member.dead_letter_publisher["events"]
  to   = google_pubsub_topic_iam_member.dead_letter_publisher["persona_events"]
}

moved {
  from = google_pubsub_subscription_iam_member.dead_letter_subscriber["events"]
  to   = google_pubsub_subscription_iam_member.dead_letter_subscriber["persona_events"]
}

# Monitoring (monitoring.tf).
moved {
  from = google_logging_metric.llm_failures
  to   = google_logging_metric.counter["llm_failures"]
}

moved {
  from = google_logging_metric.backup_failures
  to   = google_logging_metric.counter["backup_failures"]
}

moved {
  from = google_logging_metric.events_lost
  to   = google_logging_metric.counter["events_lost"]
}

moved {
  from = google_logging_metric.crisis_detected
  to   = google_logging_metric.counter["crisis_detected"]
}

moved {
  from = google_monitoring_alert_policy.llm_failures
  to   = google_monitoring_alert_policy.log_metric["llm_failures"]
}

moved {
  from = google_monitoring_alert_policy.crisis_detected
  to   = google_monitoring_alert_policy.log_metric["crisis_detected"]
}

moved {
  from = google_monitoring_alert_policy.rate_limited
  to   = google_monitoring_alert_policy.log_metric["rate_limited"]
}

moved {
  from = google_monitoring_alert_policy.backup_failure
  to   = google_monitoring_alert_policy.log_metric["backup_failure"]
}

moved {
  from = google_monitoring_alert_policy.events
  to   = google_monitoring_alert_policy.log_metric["events"]
}
