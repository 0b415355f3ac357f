# Secrets: created here, values added outside Terraform (docs/deploy.md), so no secret
# value ever lands in the Terraform state. The functions read them at pinned versions
# (functions.tf: jwt_secret_version, gemini_api_key_version).

resource "google_secret_manager_secret" "jwt" {
  secret_id = "${var.secret_prefix}jwt-secret"

  replication {
    auto {}
  }

  # Secret Manager reminds us to rotate: a SECRET_ROTATE message on this topic every
  # jwt_rotation_days (monitoring.tf turns it into an alert; docs/operations.md, "Rotating
  # the JWT secret"). Nothing rotates by itself: the two-version window needs a deploy.
  topics {
    name = google_pubsub_topic.secret_rotation.id
  }

  rotation {
    # The first reminder one period after creation; Secret Manager then advances it itself.
    next_rotation_time = timeadd(plantimestamp(), "${var.jwt_rotation_days * 24}h")
    rotation_period    = "${var.jwt_rotation_days * 86400}s"
  }

  lifecycle {
    ignore_changes = [rotation[0].next_rotation_time]
  }

  depends_on = [google_project_service.apis, google_pubsub_topic_iam_member.rotation_publisher]
}

# Only read in API-key mode (gemini_auth = "api_key"); kept in Vertex AI mode so switching
# modes never destroys a filled secret.
resource "google_secret_manager_secret" "gemini_api_key" {
  secret_id = "${var.secret_prefix}gemini-api-key"

  replication {
    auto {}
  }

  depends_on = [google_project_service.apis]
}

# The rotation reminder waits in ion-secret-rotation-hold until someone rotates and
# acknowledges it (docs/operations.md, "Rotating the JWT secret").
resource "google_monitoring_alert_policy" "secret_rotation" {
  display_name          = "ION: rotate the JWT secret"
  combiner              = "OR"
  notification_channels = local.notification_channels

  conditions {
    display_name = "Secret Manager asked for a rotation"
    condition_threshold {
      filter          = "metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\" AND resource.type=\"pubsub_subscription\" AND resource.labels.subscription_id=\"${google_pubsub_subscription.secret_rotation_hold.name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period   = "3600s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "The JWT secret is due for rotation. Follow docs/operations.md, \"Rotating the JWT secret\", then acknowledge the message: gcloud pubsub subscriptions pull ion-secret-rotation-hold --auto-ack."
  }
}
