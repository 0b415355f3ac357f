# ION Mentoring on Google Cloud: Firestore, Pub/Sub, Secret Manager, four gen2 Cloud
# Functions, a daily Firestore export, and monitoring. docs/deploy.md walks through it.

data "google_project" "this" {
  project_id = var.project_id
}

locals {
  project_number = data.google_project.this.number
  backup_bucket  = var.backup_bucket_name != "" ? var.backup_bucket_name : "${var.project_id}-ion-backups"

  # Google-managed identities that act on our behalf (created when the APIs are enabled).
  pubsub_agent    = "serviceAccount:service-${local.project_number}@gcp-sa-pubsub.iam.gserviceaccount.com"
  firestore_agent = "serviceAccount:service-${local.project_number}@gcp-sa-firestore.iam.gserviceaccount.com"

  # Settings every function gets. Secrets are not here: they arrive as secret environment
  # variables (ION_SECRETS_BACKEND=env), resolved by the platform when an instance starts,
  # so no Secret Manager call sits on a request and no client library is shipped.
  common_env = {
    ION_BACKEND            = "gcp"
    ION_GCP_PROJECT        = var.project_id
    ION_GCP_LOCATION       = var.region
    ION_FIRESTORE_DATABASE = google_firestore_database.main.name
    ION_EVENTS_TOPIC       = google_pubsub_topic.events.name
    ION_SECRETS_BACKEND    = "env"
    ION_LOG_LEVEL          = var.log_level
    ION_LOG_FORMAT         = "json"
  }

  # Firestore IAM limited to our database (IAM condition on the database resource).
  firestore_condition = "resource.name == \"projects/${var.project_id}/databases/${var.firestore_database}\""

  function_names = {
    chat           = "ion-chat"
    persona_route  = "ion-persona-route"
    persona_events = "ion-persona-events"
    backup         = "ion-backup"
  }
}

# ---------------------------------------------------------------------------------------
# APIs
# ---------------------------------------------------------------------------------------

resource "google_project_service" "apis" {
  for_each = toset([
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudscheduler.googleapis.com",
    "firestore.googleapis.com",
    "generativelanguage.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "storage.googleapis.com",
  ])

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

# ---------------------------------------------------------------------------------------
# Firestore (docs/data-model.md)
# ---------------------------------------------------------------------------------------

resource "google_firestore_database" "main" {
  project                           = var.project_id
  name                              = var.firestore_database
  location_id                       = var.firestore_location
  type                              = "FIRESTORE_NATIVE"
  point_in_time_recovery_enablement = "POINT_IN_TIME_RECOVERY_ENABLED"
  delete_protection_state           = "DELETE_PROTECTION_ENABLED"
  deletion_policy                   = "ABANDON"

  depends_on = [google_project_service.apis]
}

# The listing query: conversations of a user, newest first, id as tie-breaker.
resource "google_firestore_index" "conversations_by_user" {
  project     = var.project_id
  database    = google_firestore_database.main.name
  collection  = "conversations"
  query_scope = "COLLECTION"

  fields {
    field_path = "user_id"
    order      = "ASCENDING"
  }
  fields {
    field_path = "updated_at"
    order      = "DESCENDING"
  }
  fields {
    field_path = "__name__"
    order      = "DESCENDING"
  }
}

# Single-field index exemptions: never queried, they would only cost index writes.
resource "google_firestore_field" "index_exemptions" {
  for_each = {
    "messages.text"    = { collection = "messages", field = "text" }
    "messages.routing" = { collection = "messages", field = "routing" }
    "messages.usage"   = { collection = "messages", field = "usage" }
    "outbox.payload"   = { collection = "outbox", field = "payload" }
    "routing_disagreements.message" = {
      collection = "routing_disagreements", field = "message"
    }
  }

  project    = var.project_id
  database   = google_firestore_database.main.name
  collection = each.value.collection
  field      = each.value.field

  index_config {}
}

# TTL policies: short-lived documents carry `expires_at`; Firestore deletes them (within
# about a day of expiry) and the code treats an expired document as absent meanwhile.
resource "google_firestore_field" "ttl" {
  for_each = {
    "response_cache.expires_at"   = { collection = "response_cache", field = "expires_at" }
    "idempotency_keys.expires_at" = { collection = "idempotency_keys", field = "expires_at" }
    "quota.expires_at"            = { collection = "quota", field = "expires_at" }
    "processed_events.expires_at" = { collection = "processed_events", field = "expires_at" }
    "routing_disagreements.expires_at" = {
      collection = "routing_disagreements", field = "expires_at"
    }
  }

  project    = var.project_id
  database   = google_firestore_database.main.name
  collection = each.value.collection
  field      = each.value.field

  ttl_config {}
  # A TTL timestamp is written on every document and never queried: no index on it.
  index_config {}
}

# ---------------------------------------------------------------------------------------
# Pub/Sub (docs/events.md): events, backup requests, dead letters
# ---------------------------------------------------------------------------------------

resource "google_pubsub_topic" "events" {
  #checkov:skip=CKV_GCP_83:Google-managed encryption is enough for events that carry no message text (docs/events.md, Privacy); CMEK would add a KMS key to operate.
  name                       = var.events_topic
  message_retention_duration = "604800s"

  depends_on = [google_project_service.apis]
}

resource "google_pubsub_topic" "events_dead_letter" {
  #checkov:skip=CKV_GCP_83:Same data as the events topic; Google-managed encryption.
  name                       = "${var.events_topic}-dead-letter"
  message_retention_duration = "604800s"

  depends_on = [google_project_service.apis]
}

resource "google_pubsub_topic" "backup_requests" {
  #checkov:skip=CKV_GCP_83:Carries only the scheduler's trigger payload, no user data.
  name = "ion-backup-requests"

  depends_on = [google_project_service.apis]
}

resource "google_pubsub_topic" "backup_dead_letter" {
  #checkov:skip=CKV_GCP_83:Carries only the scheduler's trigger payload, no user data.
  name                       = "ion-backup-requests-dead-letter"
  message_retention_duration = "604800s"

  depends_on = [google_project_service.apis]
}

# Pushes each event to persona_events. Our own push subscription (rather than an Eventarc
# trigger) so it can have a dead-letter topic and an explicit retry policy; the functions
# framework turns the Pub/Sub push body into the same CloudEvent Eventarc would send.
resource "google_pubsub_subscription" "persona_events" {
  name                       = "${var.events_topic}-persona-events"
  topic                      = google_pubsub_topic.events.id
  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"

  push_config {
    # The path names the topic, so the CloudEvent's source is the topic.
    push_endpoint = "${module.persona_events.url}/projects/${var.project_id}/topics/${google_pubsub_topic.events.name}"
    oidc_token {
      service_account_email = google_service_account.pubsub_push.email
      # The service URL, which Cloud Run accepts (the default would include the path).
      audience = module.persona_events.url
    }
  }

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.events_dead_letter.id
    max_delivery_attempts = 10
  }
}

resource "google_pubsub_subscription" "backup" {
  name                 = "ion-backup-requests-backup"
  topic                = google_pubsub_topic.backup_requests.id
  ack_deadline_seconds = 300
  # A backup request older than a few hours is stale: the next daily run replaces it.
  message_retention_duration = "21600s"

  push_config {
    push_endpoint = "${module.backup.url}/projects/${var.project_id}/topics/${google_pubsub_topic.backup_requests.name}"
    oidc_token {
      service_account_email = google_service_account.pubsub_push.email
      # The service URL, which Cloud Run accepts (the default would include the path).
      audience = module.backup.url
    }
  }

  retry_policy {
    minimum_backoff = "60s"
    maximum_backoff = "600s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.backup_dead_letter.id
    max_delivery_attempts = 5
  }
}

# Dead letters are kept here (7 days) for inspection and replay; alerts watch the backlog.
resource "google_pubsub_subscription" "events_dead_letter" {
  name                       = "${var.events_topic}-dead-letter-hold"
  topic                      = google_pubsub_topic.events_dead_letter.id
  message_retention_duration = "604800s"
  ack_deadline_seconds       = 60
  expiration_policy {
    ttl = ""
  }
}

resource "google_pubsub_subscription" "backup_dead_letter" {
  name                       = "ion-backup-requests-dead-letter-hold"
  topic                      = google_pubsub_topic.backup_dead_letter.id
  message_retention_duration = "604800s"
  ack_deadline_seconds       = 60
  expiration_policy {
    ttl = ""
  }
}

# ---------------------------------------------------------------------------------------
# Backups: daily Cloud Scheduler job -> Pub/Sub -> backup function -> managed export
# ---------------------------------------------------------------------------------------

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

# ---------------------------------------------------------------------------------------
# Function sources
# ---------------------------------------------------------------------------------------

resource "google_storage_bucket" "sources" {
  #checkov:skip=CKV_GCP_62:Holds build inputs only (content-addressed archives); Cloud Audit Logs cover access.
  name                        = "${var.project_id}-ion-sources"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true

  versioning {
    enabled = true
  }

  # Old archives are only needed to rebuild an old revision; keep them for 90 days.
  lifecycle_rule {
    condition {
      age = 90
    }
    action {
      type = "Delete"
    }
  }
}

# ---------------------------------------------------------------------------------------
# Secrets: created here, values added outside Terraform (docs/deploy.md), so no secret
# value ever lands in the Terraform state.
# ---------------------------------------------------------------------------------------

resource "google_secret_manager_secret" "jwt" {
  secret_id = "${var.secret_prefix}jwt-secret"

  replication {
    auto {}
  }

  depends_on = [google_project_service.apis]
}

resource "google_secret_manager_secret" "gemini_api_key" {
  secret_id = "${var.secret_prefix}gemini-api-key"

  replication {
    auto {}
  }

  depends_on = [google_project_service.apis]
}

# ---------------------------------------------------------------------------------------
# Service accounts: one per function, each role commented with why
# ---------------------------------------------------------------------------------------

resource "google_service_account" "chat" {
  account_id   = "ion-chat"
  display_name = "ION chat function"
}

resource "google_service_account" "persona_route" {
  account_id   = "ion-persona-route"
  display_name = "ION persona_route function"
}

resource "google_service_account" "persona_events" {
  account_id   = "ion-persona-events"
  display_name = "ION persona_events consumer"
}

resource "google_service_account" "backup" {
  account_id   = "ion-backup"
  display_name = "ION backup function"
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
    chat = google_service_account.chat.email
    # persona_route: reads learned routing statistics and counts per-user rate limits.
    persona_route = google_service_account.persona_route.email
    # persona_events: writes routing statistics and the consumed-event ids (deduplication).
    persona_events = google_service_account.persona_events.email
    # backup: lists the root collections and records each export in the backup catalog.
    backup = google_service_account.backup.email
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
  member  = "serviceAccount:${google_service_account.backup.email}"
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
  member = "serviceAccount:${google_service_account.chat.email}"
}

# Functions that verify learner tokens read the JWT secret (secret-level grant).
resource "google_secret_manager_secret_iam_member" "jwt_accessors" {
  for_each = {
    chat          = google_service_account.chat.email
    persona_route = google_service_account.persona_route.email
  }

  secret_id = google_secret_manager_secret.jwt.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${each.value}"
}

# chat (answers and the routing judge) and persona_route (the routing judge) call Gemini,
# so only they read the API key.
resource "google_secret_manager_secret_iam_member" "gemini_accessor" {
  for_each = {
    chat          = google_service_account.chat.email
    persona_route = google_service_account.persona_route.email
  }

  secret_id = google_secret_manager_secret.gemini_api_key.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${each.value}"
}

# Pub/Sub mints the push OIDC tokens as ion-pubsub-push.
resource "google_service_account_iam_member" "pubsub_token_creator" {
  service_account_id = google_service_account.pubsub_push.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_agent
}

# Dead-lettering: Pub/Sub forwards undeliverable messages to the dead-letter topics...
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  for_each = {
    events = google_pubsub_topic.events_dead_letter.id
    backup = google_pubsub_topic.backup_dead_letter.id
  }

  topic  = each.value
  role   = "roles/pubsub.publisher"
  member = local.pubsub_agent
}

# ...and acknowledges them on the source subscriptions.
resource "google_pubsub_subscription_iam_member" "dead_letter_subscriber" {
  for_each = {
    events = google_pubsub_subscription.persona_events.id
    backup = google_pubsub_subscription.backup.id
  }

  subscription = each.value
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

# ---------------------------------------------------------------------------------------
# Functions
# ---------------------------------------------------------------------------------------

module "chat" {
  source = "./modules/function"

  project               = var.project_id
  region                = var.region
  name                  = local.function_names.chat
  description           = "Chat and conversations (POST /v1/chat, /v1/conversations)."
  source_bucket         = google_storage_bucket.sources.name
  source_zip            = "${path.root}/${var.dist_dir}/chat.zip"
  entry_point           = "chat"
  service_account_email = google_service_account.chat.email
  build_service_account = google_service_account.build.id
  labels                = var.labels

  environment = merge(local.common_env, var.extra_environment)
  extra_environment = {
    ION_LLM_PROVIDER = "gemini"
    ION_GEMINI_MODEL = var.gemini_model
    # Unsure routing decisions get a second opinion from Gemini (docs/routing.md, "Judge").
    ION_ROUTING_JUDGE = "gemini"
  }
  secret_environment = {
    ION_JWT_SECRET     = google_secret_manager_secret.jwt.secret_id
    ION_GEMINI_API_KEY = google_secret_manager_secret.gemini_api_key.secret_id
  }

  min_instances   = var.chat_min_instances
  max_instances   = var.chat_max_instances
  concurrency     = var.chat_concurrency
  cpu             = "1"
  memory          = "1Gi"
  timeout_seconds = 300 # streamed answers and Gemini retries
  ingress         = "ALLOW_ALL"
  public          = true

  all_traffic_on_latest_revision = var.all_traffic_on_latest_revision

  depends_on = [google_project_iam_member.build, google_storage_bucket_iam_member.build_sources, google_secret_manager_secret_iam_member.jwt_accessors]
}

module "persona_route" {
  source = "./modules/function"

  project               = var.project_id
  region                = var.region
  name                  = local.function_names.persona_route
  description           = "Routing decisions and the persona catalog (POST /v1/route, GET /v1/personas)."
  source_bucket         = google_storage_bucket.sources.name
  source_zip            = "${path.root}/${var.dist_dir}/persona_route.zip"
  entry_point           = "persona_route"
  service_account_email = google_service_account.persona_route.email
  build_service_account = google_service_account.build.id
  labels                = var.labels

  environment = merge(local.common_env, var.extra_environment)
  extra_environment = {
    # No persona answers here; only the routing judge calls Gemini (docs/routing.md).
    ION_LLM_PROVIDER  = "offline"
    ION_ROUTING_JUDGE = "gemini"
  }
  secret_environment = {
    ION_JWT_SECRET     = google_secret_manager_secret.jwt.secret_id
    ION_GEMINI_API_KEY = google_secret_manager_secret.gemini_api_key.secret_id
  }

  min_instances   = 0
  max_instances   = var.route_max_instances
  concurrency     = 40
  cpu             = "1"
  memory          = "512M"
  timeout_seconds = 30
  ingress         = "ALLOW_ALL"
  public          = true

  all_traffic_on_latest_revision = var.all_traffic_on_latest_revision

  depends_on = [google_project_iam_member.build, google_storage_bucket_iam_member.build_sources, google_secret_manager_secret_iam_member.jwt_accessors]
}

module "persona_events" {
  source = "./modules/function"

  project               = var.project_id
  region                = var.region
  name                  = local.function_names.persona_events
  description           = "Consumes chat.turn.completed and feedback.recorded (Pub/Sub push)."
  source_bucket         = google_storage_bucket.sources.name
  source_zip            = "${path.root}/${var.dist_dir}/persona_route.zip"
  entry_point           = "persona_events"
  service_account_email = google_service_account.persona_events.email
  build_service_account = google_service_account.build.id
  labels                = var.labels

  # A worker (store + routing statistics): no tokens to verify, no LLM, no secrets.
  environment        = merge(local.common_env, var.extra_environment)
  extra_environment  = {}
  secret_environment = {}

  min_instances   = 0
  max_instances   = var.events_max_instances
  concurrency     = 10
  cpu             = "1"
  memory          = "512M"
  timeout_seconds = 60
  # Only Pub/Sub push (same project) reaches it, and only as ion-pubsub-push.
  ingress         = "ALLOW_INTERNAL_ONLY"
  invoker_members = ["serviceAccount:${google_service_account.pubsub_push.email}"]

  depends_on = [google_project_iam_member.build, google_storage_bucket_iam_member.build_sources]
}

module "backup" {
  source = "./modules/function"

  project               = var.project_id
  region                = var.region
  name                  = local.function_names.backup
  description           = "Daily Firestore managed export (Cloud Scheduler -> Pub/Sub push)."
  source_bucket         = google_storage_bucket.sources.name
  source_zip            = "${path.root}/${var.dist_dir}/backup.zip"
  entry_point           = "backup"
  service_account_email = google_service_account.backup.email
  build_service_account = google_service_account.build.id
  labels                = var.labels

  environment = merge(local.common_env, var.extra_environment)
  extra_environment = {
    ION_BACKUP_MODE           = "firestore-export"
    ION_BACKUP_BUCKET         = google_storage_bucket.backups.name
    ION_BACKUP_PREFIX         = var.backup_prefix
    ION_BACKUP_RETENTION_DAYS = tostring(var.backup_retention_days)
  }
  secret_environment = {}

  min_instances   = 0
  max_instances   = 1 # one export at a time
  concurrency     = 1
  cpu             = "0.583"
  memory          = "512M"
  timeout_seconds = 540
  ingress         = "ALLOW_INTERNAL_ONLY"
  invoker_members = ["serviceAccount:${google_service_account.pubsub_push.email}"]

  depends_on = [google_project_iam_member.build, google_storage_bucket_iam_member.build_sources]
}

# ---------------------------------------------------------------------------------------
# Monitoring: log-based metrics, alert policies, dashboard
# ---------------------------------------------------------------------------------------

resource "google_monitoring_notification_channel" "email" {
  count = length(var.alert_emails)

  display_name = "ION alerts (${var.alert_emails[count.index]})"
  type         = "email"
  labels = {
    email_address = var.alert_emails[count.index]
  }
}

locals {
  notification_channels = google_monitoring_notification_channel.email[*].id
  http_services         = "resource.labels.service_name = one_of(\"${local.function_names.chat}\", \"${local.function_names.persona_route}\")"
}

# Each failed or skipped Gemini attempt (the adapter logs one WARNING per attempt), and
# each answer that could not be given at all (error code llm_unavailable).
resource "google_logging_metric" "llm_failures" {
  name        = "ion/llm_failures"
  description = "Failed Gemini attempts and chat answers that failed with llm_unavailable."
  filter      = <<-EOT
    resource.type="cloud_run_revision"
    resource.labels.service_name="${local.function_names.chat}"
    (jsonPayload.message=~"^gemini \\S+ (unusable|attempt [0-9]+ failed)" OR jsonPayload.code="llm_unavailable" OR textPayload=~"gemini \\S+ (unusable|attempt [0-9]+ failed)")
  EOT

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

# A backup that failed: an error logged by the backup function, or a scheduler run that
# could not publish its request.
resource "google_logging_metric" "backup_failures" {
  name        = "ion/backup_failures"
  description = "Errors of the backup function and failed runs of the backup scheduler job."
  filter      = <<-EOT
    (resource.type="cloud_run_revision" AND resource.labels.service_name="${local.function_names.backup}" AND severity>=ERROR)
    OR (resource.type="cloud_scheduler_job" AND resource.labels.job_id="${google_cloud_scheduler_job.backup.name}" AND severity>=ERROR)
  EOT

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
  }
}

# An event that could be neither published nor stored in the outbox (docs/events.md).
resource "google_logging_metric" "events_lost" {
  name        = "ion/events_lost"
  description = "Domain events lost after publishing and the outbox both failed."
  filter      = <<-EOT
    resource.type="cloud_run_revision"
    (jsonPayload.message=~"^event \\S+ LOST" OR textPayload=~"event \\S+ LOST")
  EOT

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
  }
}

# A learner message the crisis detector fired on (the chat function logs one WARNING per
# detection, never the text; docs/safety.md). Each one needs a human: docs/operations.md.
resource "google_logging_metric" "crisis_detected" {
  name        = "ion/crisis_detected"
  description = "Learner messages the crisis detector fired on (a human follows up)."
  filter      = <<-EOT
    resource.type="cloud_run_revision"
    resource.labels.service_name="${local.function_names.chat}"
    (jsonPayload.message=~"^crisis detected:" OR textPayload=~"crisis detected:")
  EOT

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
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

  conditions {
    display_name = "chat p95 above ${var.alert_chat_p95_ms} ms"
    condition_threshold {
      filter          = "metric.type=\"run.googleapis.com/request_latencies\" AND resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${local.function_names.chat}\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.alert_chat_p95_ms
      duration        = "600s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_PERCENTILE_95"
        group_by_fields      = ["resource.label.service_name"]
      }
    }
  }

  conditions {
    display_name = "persona_route p95 above ${var.alert_route_p95_ms} ms"
    condition_threshold {
      filter          = "metric.type=\"run.googleapis.com/request_latencies\" AND resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${local.function_names.persona_route}\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.alert_route_p95_ms
      duration        = "600s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_PERCENTILE_95"
        group_by_fields      = ["resource.label.service_name"]
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "Latency is high. For chat, check Gemini (ion/llm_failures) first; for both, Firestore latency and instance saturation (max instances, concurrency)."
  }
}

resource "google_monitoring_alert_policy" "llm_failures" {
  display_name          = "ION: Gemini failures"
  combiner              = "OR"
  notification_channels = local.notification_channels

  conditions {
    display_name = "More than ${var.alert_llm_failures} failed Gemini attempts in 5 minutes"
    condition_threshold {
      filter          = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.llm_failures.name}\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.alert_llm_failures
      duration        = "0s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "Gemini calls fail (quota, outage, bad key). Learners get 503 llm_unavailable. Check the chat logs for the reason and the key in Secret Manager (ion-gemini-api-key)."
  }
}

resource "google_monitoring_alert_policy" "crisis_detected" {
  display_name          = "ION: learner in crisis"
  combiner              = "OR"
  notification_channels = local.notification_channels

  conditions {
    display_name = "A learner message was detected as a crisis"
    condition_threshold {
      filter          = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.crisis_detected.name}\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  alert_strategy {
    auto_close = "1800s"
  }

  documentation {
    mime_type = "text/markdown"
    content   = "A learner's message was detected as a crisis and got the safe answer with crisis resources. Follow the crisis runbook in docs/operations.md now: the on-call safety lead opens the conversation id from the `crisis detected` log line (or the safety.crisis_detected event) with the ion-safety-reviewer role and follows up within the hour."
  }
}

resource "google_monitoring_alert_policy" "rate_limited" {
  display_name          = "ION: rate-limit spike"
  combiner              = "OR"
  notification_channels = local.notification_channels

  conditions {
    display_name = "More than ${var.alert_rate_limited} requests answered 429 in 5 minutes"
    condition_threshold {
      filter          = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.rate_limited.name}\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.alert_rate_limited
      duration        = "0s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "Many requests hit the per-user rate limits: an abusive client or a client retry loop. Look up the user_hash in the logs of 429 answers."
  }
}

resource "google_monitoring_alert_policy" "backup_failure" {
  display_name          = "ION: backup failed"
  combiner              = "OR"
  notification_channels = local.notification_channels

  conditions {
    display_name = "Backup function or scheduler job logged an error"
    condition_threshold {
      filter          = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.backup_failures.name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period     = "600s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  conditions {
    display_name = "Backup request dead-lettered"
    condition_threshold {
      filter          = "metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\" AND resource.type=\"pubsub_subscription\" AND resource.labels.subscription_id=\"${google_pubsub_subscription.backup_dead_letter.name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period   = "600s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "Last night's Firestore export did not start or failed. Check the ion-backup logs, then run it by hand: gcloud scheduler jobs run ion-backup --location=REGION (docs/deploy.md)."
  }
}

resource "google_monitoring_alert_policy" "events" {
  display_name          = "ION: domain events lost or dead-lettered"
  combiner              = "OR"
  notification_channels = local.notification_channels

  conditions {
    display_name = "An event was lost (publish and outbox both failed)"
    condition_threshold {
      filter          = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.events_lost.name}\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  conditions {
    display_name = "Events dead-lettered by persona_events"
    condition_threshold {
      filter          = "metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\" AND resource.type=\"pubsub_subscription\" AND resource.labels.subscription_id=\"${google_pubsub_subscription.events_dead_letter.name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "Events could not be delivered. A LOST log line holds the envelope to re-publish; dead letters wait in the -dead-letter-hold subscription (docs/deploy.md)."
  }
}

resource "google_monitoring_dashboard" "ion" {
  dashboard_json = jsonencode({
    displayName = "ION Mentoring"
    mosaicLayout = {
      columns = 12
      tiles = [
        for index, widget in [
          {
            title = "Requests per function (per second)"
            xyChart = { dataSets = [{
              plotType = "LINE"
              timeSeriesQuery = { timeSeriesFilter = {
                filter      = "metric.type=\"run.googleapis.com/request_count\" AND resource.type=\"cloud_run_revision\""
                aggregation = { alignmentPeriod = "60s", perSeriesAligner = "ALIGN_RATE", crossSeriesReducer = "REDUCE_SUM", groupByFields = ["resource.label.service_name"] }
              } }
            }] }
          },
          {
            title = "5xx responses per function (per second)"
            xyChart = { dataSets = [{
              plotType = "LINE"
              timeSeriesQuery = { timeSeriesFilter = {
                filter      = "metric.type=\"run.googleapis.com/request_count\" AND resource.type=\"cloud_run_revision\" AND metric.labels.response_code_class=\"5xx\""
                aggregation = { alignmentPeriod = "60s", perSeriesAligner = "ALIGN_RATE", crossSeriesReducer = "REDUCE_SUM", groupByFields = ["resource.label.service_name"] }
              } }
            }] }
          },
          {
            title = "p95 latency per function (ms)"
            xyChart = { dataSets = [{
              plotType = "LINE"
              timeSeriesQuery = { timeSeriesFilter = {
                filter      = "metric.type=\"run.googleapis.com/request_latencies\" AND resource.type=\"cloud_run_revision\""
                aggregation = { alignmentPeriod = "60s", perSeriesAligner = "ALIGN_DELTA", crossSeriesReducer = "REDUCE_PERCENTILE_95", groupByFields = ["resource.label.service_name"] }
              } }
            }] }
          },
          {
            title = "Gemini failures"
            xyChart = { dataSets = [{
              plotType = "STACKED_BAR"
              timeSeriesQuery = { timeSeriesFilter = {
                filter      = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.llm_failures.name}\" AND resource.type=\"cloud_run_revision\""
                aggregation = { alignmentPeriod = "300s", perSeriesAligner = "ALIGN_DELTA", crossSeriesReducer = "REDUCE_SUM" }
              } }
            }] }
          },
          {
            title = "Rate-limited requests (429)"
            xyChart = { dataSets = [{
              plotType = "STACKED_BAR"
              timeSeriesQuery = { timeSeriesFilter = {
                filter      = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.rate_limited.name}\" AND resource.type=\"cloud_run_revision\""
                aggregation = { alignmentPeriod = "300s", perSeriesAligner = "ALIGN_DELTA", crossSeriesReducer = "REDUCE_SUM", groupByFields = ["metric.label.service"] }
              } }
            }] }
          },
          {
            title = "Backup failures and dead letters"
            xyChart = { dataSets = [
              {
                plotType = "STACKED_BAR"
                timeSeriesQuery = { timeSeriesFilter = {
                  filter      = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.backup_failures.name}\""
                  aggregation = { alignmentPeriod = "3600s", perSeriesAligner = "ALIGN_DELTA", crossSeriesReducer = "REDUCE_SUM" }
                } }
              },
              {
                plotType = "LINE"
                timeSeriesQuery = { timeSeriesFilter = {
                  filter      = "metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\" AND resource.type=\"pubsub_subscription\""
                  aggregation = { alignmentPeriod = "300s", perSeriesAligner = "ALIGN_MAX", crossSeriesReducer = "REDUCE_MAX", groupByFields = ["resource.label.subscription_id"] }
                } }
              },
            ] }
          },
          {
            title = "Instances per function"
            xyChart = { dataSets = [{
              plotType = "LINE"
              timeSeriesQuery = { timeSeriesFilter = {
                filter      = "metric.type=\"run.googleapis.com/container/instance_count\" AND resource.type=\"cloud_run_revision\""
                aggregation = { alignmentPeriod = "60s", perSeriesAligner = "ALIGN_MAX", crossSeriesReducer = "REDUCE_SUM", groupByFields = ["resource.label.service_name"] }
              } }
            }] }
          },
          ] : {
          xPos   = (index % 2) * 6
          yPos   = floor(index / 2) * 4
          width  = 6
          height = 4
          widget = widget
        }
      ]
    }
  })
}
