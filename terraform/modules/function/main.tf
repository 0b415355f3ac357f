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
  #checkov:skip=CKV_GCP_124:ingress is this module's input, never ALLOW_ALL here: the public APIs pass ALLOW_INTERNAL_AND_GCLB (reachable only through the load balancer and its Cloud Armor policy, edge.tf) and event functions ALLOW_INTERNAL_ONLY; tests/infra/test_terraform_contract.py holds them to that.
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
        secret     = secret_environment_variables.value.secret
        # A pinned version (never `latest`): a rotation is a reviewed Terraform change that
        # rolls out as a new revision, and every instance of a revision holds the same value.
        version = secret_environment_variables.value.version
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
