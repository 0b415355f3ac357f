# Addresses from before the functions and push subscriptions were written as for_each:
# these blocks make Terraform move the existing objects in the state instead of destroying
# and recreating them. Remove them once every deployment has applied them.

# Functions (functions.tf).
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

