# Backups: a daily Cloud Scheduler job publishes a request, Pub/Sub pushes it to the backup
# function (pubsub.tf), which starts a managed Firestore export into this bucket.

locals {
  backup_bucket = var.backup_bucket_name != "" ? var.backup_bucket_name : "${var.project_id}-ion-backups"
}

resource "google_cloud_scheduler_job" "backup" {
  name        = "ion-backup"
  region      = var.region
  description = "Daily Firestore export (the backup function starts it)."
  schedule    = var.backup_schedule
  time_zone   = var.backup_time_zone

  pubsub_target {
    topic_name = google_pubsub_topic.backup_requests.id
    data       = base64encode(jsonencode({ trigger = "scheduler", job = "ion-backup" }))
  }

  retry_config {
    retry_count = 3
  }

  depends_on = [google_project_service.apis]
}

resource "google_storage_bucket" "backups" {
  #checkov:skip=CKV_GCP_62:Storage usage logs would need a second bucket; Data Access audit logs for storage.googleapis.com (iam.tf, data_access) record every read and write of these objects, with the caller's identity.
  name                        = local.backup_bucket
  location                    = var.backup_location
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false

  versioning {
    enabled = true
  }

  # Retention: an export older than backup_retention_days is deleted...
  lifecycle_rule {
    condition {
      age = var.backup_retention_days
    }
    action {
      type = "Delete"
    }
  }

  # ...and so are overwritten or deleted versions, one day after they stop being current.
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 1
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }
}

# Firestore's native backups, next to the exports: daily, kept firestore_backup_retention_days,
# restored into a new database in one command. Exports stay for what backups cannot do:
# another project, a subset of collections, longer retention (docs/operations.md).
resource "google_firestore_backup_schedule" "daily" {
  project   = var.project_id
  database  = google_firestore_database.main.name
  retention = "${var.firestore_backup_retention_days * 86400}s"

  daily_recurrence {}
}

# The backup function's line when it finds an export finished well: BackupRunner logs
# "backup <id> is now succeeded" on the run after the export (shared/ion/services/backup.py).
resource "google_logging_metric" "backup_succeeded" {
  name        = "ion/backup_succeeded"
  description = "Managed exports the backup function confirmed as succeeded."
  filter      = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${local.function_names.backup}\" AND jsonPayload.message=~\"^backup [^ ]+ is now succeeded$\""

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
  }
}

# No confirmed export for 26 hours. Metric-absence conditions stop at 23.5 h and alerting
# alignment at 25 h, so: fewer than one success over the last 25 h, for one more hour.
# Missing data counts as violating: a metric that never reported alerts too.
resource "google_monitoring_alert_policy" "backup_missing" {
  display_name          = "ION: no successful backup for 26 h"
  combiner              = "OR"
  notification_channels = local.notification_channels

  conditions {
    display_name = "No export confirmed succeeded in 26 h"
    condition_threshold {
      filter                  = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.backup_succeeded.name}\" AND resource.type=\"cloud_run_revision\""
      comparison              = "COMPARISON_LT"
      threshold_value         = 1
      duration                = "3600s"
      evaluation_missing_data = "EVALUATION_MISSING_DATA_ACTIVE"

      aggregations {
        alignment_period     = "90000s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "No Firestore export was confirmed succeeded for 26 hours. docs/troubleshooting.md, \"No successful backup\"; Firestore's own daily backups (gcloud firestore backups list) still cover the gap."
  }
}
