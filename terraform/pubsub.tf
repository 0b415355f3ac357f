# Pub/Sub (docs/events.md): the domain events topic, the backup requests topic, and for
# each event function a push subscription with its own dead-letter topic.

resource "google_pubsub_topic" "events" {
  #checkov:skip=CKV_GCP_83:Google-managed encryption is enough for events that carry no message text (docs/events.md, Privacy); CMEK would add a KMS key to operate.
  name                       = var.events_topic
  message_retention_duration = "604800s"

  depends_on = [google_project_service.apis]
}

resource "google_pubsub_topic" "backup_requests" {
  #checkov:skip=CKV_GCP_83:Carries only the scheduler's trigger payload, no user data.
  name = "ion-backup-requests"

  depends_on = [google_project_service.apis]
}

locals {
  # What pushes each event function (functions.tf, event_functions), by the same key. Our
  # own push subscriptions (rather than Eventarc triggers) so each has a dead-letter topic
  # and an explicit retry policy; the functions framework turns the Pub/Sub push body into
  # the same CloudEvent Eventarc would send.
  push_subscriptions = {
    persona_events = {
      topic                      = google_pubsub_topic.events
      name                       = "${var.events_topic}-persona-events"
      ack_deadline_seconds       = 60
      message_retention_duration = "604800s"
      minimum_backoff            = "10s"
      max_delivery_attempts      = 10
    }
    backup = {
      topic                = google_pubsub_topic.backup_requests
      name                 = "ion-backup-requests-backup"
      ack_deadline_seconds = 300
      # A backup request older than a few hours is stale: the next daily run replaces it.
      message_retention_duration = "21600s"
      minimum_backoff            = "60s"
      max_delivery_attempts      = 5
    }
  }
}

resource "google_pubsub_subscription" "push" {
  for_each = local.push_subscriptions

  name                       = each.value.name
  topic                      = each.value.topic.id
  ack_deadline_seconds       = each.value.ack_deadline_seconds
  message_retention_duration = each.value.message_retention_duration

  push_config {
    # The path names the topic, so the CloudEvent's source is the topic.
    push_endpoint = "${module.event_function[each.key].url}/projects/${var.project_id}/topics/${each.value.topic.name}"
    oidc_token {
      service_account_email = google_service_account.pubsub_push.email
      # The service URL, which Cloud Run accepts (the default would include the path).
      audience = module.event_function[each.key].url
    }
  }

  retry_policy {
    minimum_backoff = each.value.minimum_backoff
    maximum_backoff = "600s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter[each.key].id
    max_delivery_attempts = each.value.max_delivery_attempts
  }
}

# Messages a push subscription gave up on, named after their source topic.
resource "google_pubsub_topic" "dead_letter" {
  #checkov:skip=CKV_GCP_83:Holds the undelivered messages of its source topic (same data, same Google-managed encryption; see the skips above).
  for_each = local.push_subscriptions

  name                       = "${each.value.topic.name}-dead-letter"
  message_retention_duration = "604800s"

  depends_on = [google_project_service.apis]
}

# Dead letters are kept here (7 days) for inspection and replay; alerts watch the backlog.
resource "google_pubsub_subscription" "dead_letter_hold" {
  for_each = google_pubsub_topic.dead_letter

  name                       = "${each.value.name}-hold"
  topic                      = each.value.id
  message_retention_duration = "604800s"
  ack_deadline_seconds       = 60
  expiration_policy {
    ttl = ""
  }
}

# Rotation reminders of the JWT secret (secrets.tf). Held by a pull subscription that
# nobody consumes: the undelivered message is what the rotation alert watches, and it is
# acknowledged by hand once the rotation is done (docs/operations.md).
resource "google_pubsub_topic" "secret_rotation" {
  #checkov:skip=CKV_GCP_83:Carries only Secret Manager's rotation notice (secret name and event type), never a secret value.
  name = "ion-secret-rotation"

  depends_on = [google_project_service.apis]
}

resource "google_pubsub_subscription" "secret_rotation_hold" {
  name                       = "ion-secret-rotation-hold"
  topic                      = google_pubsub_topic.secret_rotation.id
  message_retention_duration = "604800s"
  ack_deadline_seconds       = 60
  expiration_policy {
    ttl = ""
  }
}
