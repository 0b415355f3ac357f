# Identities and grants: one service account per function, each role commented with why.

data "google_project" "this" {
  project_id = var.project_id
}

locals {
  project_number = data.google_project.this.number

  # Google-managed identities that act on our behalf (created when the APIs are enabled).
  pubsub_agent    = "serviceAccount:service-${local.project_number}@gcp-sa-pubsub.iam.gserviceaccount.com"
  firestore_agent = "serviceAccount:service-${local.project_number}@gcp-sa-firestore.iam.gserviceaccount.com"
  # Created on first use, or by `gcloud beta services identity create` (docs/deploy.md).
  secretmanager_agent = "serviceAccount:service-${local.project_number}@gcp-sa-secretmanager.iam.gserviceaccount.com"

  # The functions that call Gemini (answers, the routing judge), by key.
  gemini_callers = {
    chat          = google_service_account.function["chat"].email
    persona_route = google_service_account.function["persona_route"].email
  }

  # Firestore IAM limited to our database (IAM condition on the database resource).
  firestore_condition = "resource.name == \"projects/${var.project_id}/databases/${var.firestore_database}\""
}

# Each function runs as its own account, named like the function (value: display name).
resource "google_service_account" "function" {
  for_each = {
    chat           = "ION chat function"
    persona_route  = "ION persona_route function"
    persona_events = "ION persona_events consumer"
    backup         = "ION backup function"
  }

  account_id   = local.function_names[each.key]
  display_name = each.value
}

# Identity Pub/Sub signs push requests with (OIDC); may only invoke the event functions.
resource "google_service_account" "pubsub_push" {
  account_id   = "ion-pubsub-push"
  display_name = "ION Pub/Sub push invoker"
}

# Identity Cloud Build uses to build the function containers from the source archives.
resource "google_service_account" "build" {
  account_id   = "ion-function-build"
  display_name = "ION function builds"
}

# Firestore access, limited to our database by an IAM condition.
resource "google_project_iam_member" "firestore_users" {
  for_each = {
    # chat: reads and writes conversations, messages, outbox, cache, rate limits.
    chat = google_service_account.function["chat"].email
    # persona_route: reads learned routing statistics and counts per-user rate limits.
    persona_route = google_service_account.function["persona_route"].email
    # persona_events: writes routing statistics and the consumed-event ids (deduplication).
    persona_events = google_service_account.function["persona_events"].email
    # backup: lists the root collections and records each export in the backup catalog.
    backup = google_service_account.function["backup"].email
  }

  project = var.project_id
  role    = "roles/datastore.user"
  member  = "serviceAccount:${each.value}"

  condition {
    title      = "ion-database-only"
    expression = local.firestore_condition
  }
}

# The safety reviewers read a crisis conversation to follow up (docs/operations.md): the
# only human read access to learners' text that this configuration grants.
resource "google_project_iam_member" "safety_reviewers" {
  for_each = toset(var.safety_reviewers)

  project = var.project_id
  role    = "roles/datastore.viewer"
  member  = each.value
}

# backup: starting a managed export needs datastore.databases.export (this role only adds
# import/export on top of nothing else).
resource "google_project_iam_member" "backup_export" {
  project = var.project_id
  role    = "roles/datastore.importExportAdmin"
  member  = "serviceAccount:${google_service_account.function["backup"].email}"
}

# The Firestore service agent writes the export files into the backup bucket.
resource "google_storage_bucket_iam_member" "backup_firestore_agent" {
  bucket = google_storage_bucket.backups.name
  role   = "roles/storage.admin"
  member = local.firestore_agent

  depends_on = [google_firestore_database.main]
}

# chat: publishes chat.turn.completed and feedback.recorded (topic-level, not project-level).
resource "google_pubsub_topic_iam_member" "chat_publisher" {
  topic  = google_pubsub_topic.events.id
  role   = "roles/pubsub.publisher"
  member = "serviceAccount:${google_service_account.function["chat"].email}"
}

# Functions that verify learner tokens read the JWT secret (secret-level grant).
resource "google_secret_manager_secret_iam_member" "jwt_accessors" {
  for_each = {
    chat          = google_service_account.function["chat"].email
    persona_route = google_service_account.function["persona_route"].email
  }

  secret_id = google_secret_manager_secret.jwt.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${each.value}"
}

# chat (answers and the routing judge) and persona_route (the routing judge) call Gemini,
# so only they read the API key, and only in API-key mode.
resource "google_secret_manager_secret_iam_member" "gemini_accessor" {
  for_each = var.gemini_auth == "api_key" ? local.gemini_callers : {}

  secret_id = google_secret_manager_secret.gemini_api_key.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${each.value}"
}

# Vertex AI mode: the same two call Gemini as themselves. roles/aiplatform.user is the
# narrowest predefined role holding aiplatform.endpoints.predict; no key exists to leak.
resource "google_project_iam_member" "vertex_users" {
  for_each = var.gemini_auth == "vertex" ? local.gemini_callers : {}

  project = var.project_id
  role    = "roles/aiplatform.user"
  member  = "serviceAccount:${each.value}"
}

# Secret Manager publishes the JWT secret's rotation reminders (secrets.tf) to this topic.
resource "google_pubsub_topic_iam_member" "rotation_publisher" {
  topic  = google_pubsub_topic.secret_rotation.id
  role   = "roles/pubsub.publisher"
  member = local.secretmanager_agent
}

# Pub/Sub mints the push OIDC tokens as ion-pubsub-push.
resource "google_service_account_iam_member" "pubsub_token_creator" {
  service_account_id = google_service_account.pubsub_push.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_agent
}

# Dead-lettering: Pub/Sub forwards undeliverable messages to the dead-letter topics...
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  for_each = local.push_subscriptions

  topic  = google_pubsub_topic.dead_letter[each.key].id
  role   = "roles/pubsub.publisher"
  member = local.pubsub_agent
}

# ...and acknowledges them on the source subscriptions.
resource "google_pubsub_subscription_iam_member" "dead_letter_subscriber" {
  for_each = local.push_subscriptions

  subscription = google_pubsub_subscription.push[each.key].id
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
}

# Build identity (Cloud Build builds each function's container from its archive):
resource "google_project_iam_member" "build" {
  for_each = {
    # write the build logs;
    logs = "roles/logging.logWriter"
    # push the built image to the gcf-artifacts repository;
    images = "roles/artifactregistry.writer"
  }

  project = var.project_id
  role    = each.value
  member  = "serviceAccount:${google_service_account.build.email}"
}

# ...and read the source archives (this bucket only).
resource "google_storage_bucket_iam_member" "build_sources" {
  bucket = google_storage_bucket.sources.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.build.email}"
}

# Data Access audit logs, off by default: who read or wrote learners' data (Firestore), who
# read a secret (Secret Manager), and who read or wrote an object in our buckets (backups,
# function sources).
resource "google_project_iam_audit_config" "data_access" {
  for_each = toset([
    "datastore.googleapis.com",
    "secretmanager.googleapis.com",
    "storage.googleapis.com",
  ])

  project = var.project_id
  service = each.value

  audit_log_config {
    log_type = "ADMIN_READ"
  }
  audit_log_config {
    log_type = "DATA_READ"
  }
  audit_log_config {
    log_type = "DATA_WRITE"
  }
}
