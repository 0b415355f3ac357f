# One gen2 Cloud Function (a Cloud Run service underneath) built from a source archive.

locals {
  # Named by content: a new archive is a new object, so Terraform updates the function (and
  # Cloud Functions builds a new revision) exactly when the code changed.
  source_object = "${var.name}/${filesha256(var.source_zip)}.zip"
}

resource "google_storage_bucket_object" "source" {
  name   = local.source_object
  bucket = var.source_bucket
  source = var.source_zip
}

resource "google_cloudfunctions2_function" "this" {
  #checkov:skip=CKV_GCP_124:ingress is this module's input. Only the public APIs (chat, persona_route) pass ALLOW_ALL: browsers and apps call them directly and every /v1 call is JWT-authenticated by the app; event functions are ALLOW_INTERNAL_ONLY (tests/test_terraform_contract.py holds it to that).
  project     = var.project
  location    = var.region
  name        = var.name
  description = var.description
  labels      = var.labels

  build_config {
    runtime         = var.runtime
    entry_point     = var.entry_point
    service_account = var.build_service_account

    source {
      storage_source {
        bucket = var.source_bucket
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    min_instance_count               = var.min_instances
    max_instance_count               = var.max_instances
    max_instance_request_concurrency = var.concurrency
    available_cpu                    = var.cpu
    available_memory                 = var.memory
    timeout_seconds                  = var.timeout_seconds
    ingress_settings                 = var.ingress
    all_traffic_on_latest_revision   = var.all_traffic_on_latest_revision
    service_account_email            = var.service_account_email
    environment_variables            = var.environment

    dynamic "secret_environment_variables" {
      for_each = var.secret_environment
      content {
        key        = secret_environment_variables.key
        project_id = var.project
        secret     = secret_environment_variables.value
        # Resolved when an instance starts: a rotated secret reaches new instances (deploy a
        # new revision to roll it out everywhere, docs/deploy.md).
        version = "latest"
      }
    }
  }
}

# Gen2 functions are invoked through their Cloud Run service (same name as the function).
resource "google_cloud_run_v2_service_iam_member" "public" {
  count = var.public ? 1 : 0

  project  = var.project
  location = var.region
  name     = google_cloudfunctions2_function.this.name
  role     = "roles/run.invoker"
  member   = "allUsers"
}

# Event functions: only the listed identities (the Pub/Sub push account) may invoke them.
resource "google_cloud_run_v2_service_iam_member" "invoker" {
  # count (not for_each): members are often service account emails unknown until applied.
  count = length(var.invoker_members)

  project  = var.project
  location = var.region
  name     = google_cloudfunctions2_function.this.name
  role     = "roles/run.invoker"
  member   = var.invoker_members[count.index]
}
