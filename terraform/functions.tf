# The four gen2 Cloud Functions (modules/function) and the bucket of their source archives.

resource "google_storage_bucket" "sources" {
  #checkov:skip=CKV_GCP_62:Holds build inputs only (content-addressed archives); Data Access audit logs for storage.googleapis.com (iam.tf, data_access) record who read or wrote them.
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

locals {
  # Function (= Cloud Run service) names; the service accounts, log metrics and alerts use
  # them too.
  function_names = {
    chat           = "ion-chat"
    persona_route  = "ion-persona-route"
    persona_events = "ion-persona-events"
    backup         = "ion-backup"
  }

  # Settings every function gets. Secrets are not here: they arrive as secret environment
  # variables (ION_SECRETS_BACKEND=env) at pinned versions, resolved by the platform when an
  # instance starts, so no Secret Manager call sits on a request and no client library is
  # shipped.
  common_env = {
    ION_BACKEND            = "gcp"
    ION_GCP_PROJECT        = var.project_id
    ION_GCP_LOCATION       = var.region
    ION_FIRESTORE_DATABASE = google_firestore_database.main.name
    ION_EVENTS_TOPIC       = google_pubsub_topic.events.name
    ION_SECRETS_BACKEND    = "env"
    ION_LOG_LEVEL          = var.log_level
    ION_LOG_FORMAT         = "json"
    # glibc gives each request thread its own malloc arena; two arenas keep a concurrent
    # instance's heap from creeping (docs/performance.md, the leak check).
    MALLOC_ARENA_MAX = "2"
    # Both public APIs run the crisis detector; one operating point for the deployment.
    ION_SAFETY_EVERYDAY_BUDGET = var.safety_everyday_budget
    # The web app's origin (web.tf) may call the APIs from the browser.
    ION_CORS_ORIGINS = local.web_origin
  }

  # Gemini credentials of the functions that call it (chat, and the routing judge in both):
  # Vertex AI with the function's own service account (roles/aiplatform.user, iam.tf) and no
  # key at all, or the API key from Secret Manager.
  gemini_environment = var.gemini_auth == "vertex" ? { ION_GEMINI_VERTEX = "true" } : { ION_GEMINI_VERTEX = "false" }
  gemini_secrets = var.gemini_auth == "api_key" ? {
    ION_GEMINI_API_KEY = { secret = google_secret_manager_secret.gemini_api_key.secret_id, version = tostring(var.gemini_api_key_version) }
  } : {}

  # The HS256 secret at two pinned versions of the same secret: the current one signs and
  # verifies, the one before it still verifies during the rotation window (docs/operations.md).
  jwt_secrets = merge(
    { ION_JWT_SECRET = { secret = google_secret_manager_secret.jwt.secret_id, version = tostring(var.jwt_secret_version) } },
    var.jwt_secret_version > 1 ? {
      ION_JWT_PREVIOUS_SECRET = { secret = google_secret_manager_secret.jwt.secret_id, version = tostring(var.jwt_secret_version - 1) }
    } : {},
  )

  # The public APIs, keyed by entry point. `environment` is what a function adds to (or
  # overrides in) common_env and var.extra_environment; `archive` is its dist/<archive>.zip.
  http_functions = {
    chat = {
      description = "Chat and conversations (POST /v1/chat, /v1/conversations)."
      archive     = "chat"
      environment = {
        ION_LLM_PROVIDER = "gemini"
        ION_GEMINI_MODEL = var.gemini_model
        # Unsure routing decisions get a second opinion from Gemini (docs/routing.md, "Judge").
        ION_ROUTING_JUDGE = "gemini"
      }
      min_instances   = var.chat_min_instances
      max_instances   = var.chat_max_instances
      concurrency     = var.chat_concurrency
      cpu             = var.chat_cpu
      memory          = "1Gi"
      timeout_seconds = 300 # streamed answers and Gemini retries
    }
    persona_route = {
      description = "Routing decisions and the persona catalog (POST /v1/route, GET /v1/personas)."
      archive     = "persona_route"
      environment = {
        # No persona answers here; only the routing judge calls Gemini (docs/routing.md).
        ION_LLM_PROVIDER  = "offline"
        ION_ROUTING_JUDGE = "gemini"
      }
      min_instances   = var.route_min_instances
      max_instances   = var.route_max_instances
      concurrency     = var.route_concurrency
      cpu             = var.route_cpu
      memory          = "512M"
      timeout_seconds = 30
    }
  }

  # The functions Pub/Sub pushes to (pubsub.tf, push_subscriptions), keyed by entry point.
  event_functions = {
    persona_events = {
      description = "Consumes chat.turn.completed and feedback.recorded (Pub/Sub push)."
      archive     = "persona_route"
      # A worker (store + routing statistics): no tokens to verify, no LLM.
      environment     = {}
      max_instances   = var.events_max_instances
      concurrency     = 10
      cpu             = "1"
      timeout_seconds = 60
    }
    backup = {
      description = "Daily Firestore managed export (Cloud Scheduler -> Pub/Sub push)."
      archive     = "backup"
      environment = {
        ION_BACKUP_MODE           = "firestore-export"
        ION_BACKUP_BUCKET         = google_storage_bucket.backups.name
        ION_BACKUP_PREFIX         = var.backup_prefix
        ION_BACKUP_RETENTION_DAYS = tostring(var.backup_retention_days)
      }
      max_instances   = 1 # one export at a time
      concurrency     = 1
      cpu             = "0.583"
      timeout_seconds = 540
    }
  }
}

locals {
  # gunicorn inside each public API (functions-framework reads WORKERS and THREADS; its
  # default is 4 threads per CPU, fewer than the requests Cloud Run sends at once).
  gunicorn_environment = {
    for entry_point, function in local.http_functions : entry_point => {
      WORKERS = function.cpu
      THREADS = tostring(function.concurrency)
    }
  }

  # One instance of each public API per region of var.http_regions, keyed
  # "<entry point>-<region>": the load balancer (edge.tf) sends each caller to the nearest
  # healthy region. Firestore and Pub/Sub are global, so every region serves the same data.
  http_deployments = {
    for pair in setproduct(keys(local.http_functions), var.http_regions) :
    "${pair[0]}-${pair[1]}" => merge(local.http_functions[pair[0]], { entry_point = pair[0], region = pair[1] })
  }
}

# Browsers and apps reach these only through the load balancer (ingress
# internal-and-cloud-load-balancing, edge.tf); the app authenticates every /v1 call with its
# own JWTs. Both verify learner tokens and call Gemini, so both get the same credentials.
module "http_function" {
  source   = "./modules/function"
  for_each = local.http_deployments

  project               = var.project_id
  region                = each.value.region
  name                  = local.function_names[each.value.entry_point]
  description           = each.value.description
  source_bucket         = google_storage_bucket.sources.name
  source_zip            = "${path.root}/${var.dist_dir}/${each.value.archive}.zip"
  entry_point           = each.value.entry_point
  service_account_email = google_service_account.function[each.value.entry_point].email
  build_service_account = google_service_account.build.id
  labels                = var.labels

  # Vertex AI is called in the function's own region (ION_GCP_LOCATION). gunicorn
  # (functions-framework reads WORKERS and THREADS): one worker per vCPU, and as many
  # threads as the requests Cloud Run sends at once, so no admitted request waits inside
  # the instance for a thread while others wait on Gemini (docs/performance.md).
  environment        = merge(local.common_env, var.extra_environment, each.value.environment, local.gemini_environment, { ION_GCP_LOCATION = each.value.region }, local.gunicorn_environment[each.value.entry_point])
  secret_environment = merge(local.jwt_secrets, local.gemini_secrets)

  min_instances   = each.value.min_instances
  max_instances   = each.value.max_instances
  concurrency     = each.value.concurrency
  cpu             = each.value.cpu
  memory          = each.value.memory
  timeout_seconds = each.value.timeout_seconds
  ingress         = "ALLOW_INTERNAL_AND_GCLB"
  public          = true

  all_traffic_on_latest_revision = var.all_traffic_on_latest_revision

  depends_on = [google_project_iam_member.build, google_storage_bucket_iam_member.build_sources, google_secret_manager_secret_iam_member.jwt_accessors, google_project_iam_member.vertex_users]
}

# Workers fed by Pub/Sub push: no secrets, and only Pub/Sub push (same project) reaches
# them, as ion-pubsub-push.
module "event_function" {
  source   = "./modules/function"
  for_each = local.event_functions

  project               = var.project_id
  region                = var.region
  name                  = local.function_names[each.key]
  description           = each.value.description
  source_bucket         = google_storage_bucket.sources.name
  source_zip            = "${path.root}/${var.dist_dir}/${each.value.archive}.zip"
  entry_point           = each.key
  service_account_email = google_service_account.function[each.key].email
  build_service_account = google_service_account.build.id
  labels                = var.labels

  environment        = merge(local.common_env, var.extra_environment, each.value.environment)
  secret_environment = {}

  min_instances   = 0
  max_instances   = each.value.max_instances
  concurrency     = each.value.concurrency
  cpu             = each.value.cpu
  memory          = "512M"
  timeout_seconds = each.value.timeout_seconds
  ingress         = "ALLOW_INTERNAL_ONLY"
  invoker_members = ["serviceAccount:${google_service_account.pubsub_push.email}"]

  depends_on = [google_project_iam_member.build, google_storage_bucket_iam_member.build_sources]
}
