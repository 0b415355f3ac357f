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
  #checkov:skip=CKV_GCP_62:Access logs would need a second bucket to operate; Cloud Audit Logs already record admin and data access on this bucket.
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
