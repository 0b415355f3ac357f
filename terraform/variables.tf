# --- project and placement ---

variable "project_id" {
  type        = string
  description = "Google Cloud project id to deploy into."
}

variable "environment" {
  type        = string
  description = "Which deployment this is (dev, staging or prod): one Google Cloud project each, one state prefix each (environments/<name>.backend.hcl)."
  default     = "prod"

  validation {
    condition     = contains(["dev", "staging", "prod"], var.environment)
    error_message = "environment must be dev, staging or prod."
  }
}

variable "region" {
  type        = string
  description = "Primary region: the event functions (persona_events, backup), the scheduler job and the Pub/Sub push endpoints. Keep it in http_regions."
  default     = "us-central1"
}

variable "http_regions" {
  type        = list(string)
  description = "Regions the public APIs (chat, persona_route) run in, all behind the one load balancer (edge.tf). Two or more survive the loss of a region (docs/operations.md)."
  default     = ["us-central1", "us-east4"]

  validation {
    condition     = length(var.http_regions) >= 1 && length(var.http_regions) == length(distinct(var.http_regions))
    error_message = "http_regions must list at least one region, each once."
  }
}

variable "firestore_location" {
  type        = string
  description = "Firestore location (a region like us-central1 or a multi-region like nam5); cannot be changed after creation."
  default     = "nam5"
}

variable "firestore_database" {
  type        = string
  description = "Firestore database id (ION_FIRESTORE_DATABASE); \"(default)\" is the free-tier database."
  default     = "(default)"
}

variable "labels" {
  type        = map(string)
  description = "Labels put on every resource that supports them."
  default     = { app = "ion-mentoring" }
}

variable "dist_dir" {
  type        = string
  description = "Directory holding the archives from `make package`, relative to this directory."
  default     = "../dist"
}

# --- application settings (ION_*) ---

variable "events_topic" {
  type        = string
  description = "Pub/Sub topic for domain events (ION_EVENTS_TOPIC)."
  default     = "ion-events"
}

variable "gemini_model" {
  type        = string
  description = "Primary Gemini model of the chat function (ION_GEMINI_MODEL)."
  default     = "gemini-2.5-flash"
}

variable "gemini_auth" {
  type        = string
  description = "How the functions authenticate to Gemini: vertex (Vertex AI as the function's service account with roles/aiplatform.user, no key) or api_key (the <prefix>gemini-api-key secret, pinned at gemini_api_key_version)."
  default     = "vertex"

  validation {
    condition     = contains(["vertex", "api_key"], var.gemini_auth)
    error_message = "gemini_auth must be vertex or api_key."
  }
}

variable "gemini_api_key_version" {
  type        = number
  description = "Version of the <prefix>gemini-api-key secret the functions read in api_key mode (pinned: a new key is a new version and a deploy)."
  default     = 1
}

variable "jwt_secret_version" {
  type        = number
  description = "Version of the <prefix>jwt-secret secret that signs and verifies (ION_JWT_SECRET); the version before it still verifies (ION_JWT_PREVIOUS_SECRET). Raise it by one to rotate (docs/operations.md)."
  default     = 1

  validation {
    condition     = var.jwt_secret_version >= 1 && floor(var.jwt_secret_version) == var.jwt_secret_version
    error_message = "jwt_secret_version must be a whole number of at least 1."
  }
}

variable "jwt_rotation_days" {
  type        = number
  description = "Days between the JWT secret's rotation reminders (Secret Manager publishes to ion-secret-rotation; an alert asks for the rotation)."
  default     = 90

  validation {
    condition     = var.jwt_rotation_days >= 1
    error_message = "jwt_rotation_days must be at least 1."
  }
}

variable "secret_prefix" {
  type        = string
  description = "Prefix of the Secret Manager secret ids (ION_SECRET_PREFIX): <prefix>jwt-secret, <prefix>gemini-api-key."
  default     = "ion-"
}

variable "log_level" {
  type        = string
  description = "Python log level of every function (ION_LOG_LEVEL)."
  default     = "INFO"
}

variable "safety_everyday_budget" {
  type        = number
  description = "Crisis detector operating point (ION_SAFETY_EVERYDAY_BUDGET): the share of everyday learner messages it may flag, one of the points `ion train safety` calibrates. Higher catches more crises and alerts operators more often (docs/safety.md, \"The operating point\")."
  default     = 0.02

  validation {
    condition     = contains([0.0025, 0.005, 0.01, 0.02], var.safety_everyday_budget)
    error_message = "safety_everyday_budget must be 0.0025, 0.005, 0.01 or 0.02 (the calibrated operating points)."
  }
}

variable "extra_environment" {
  type        = map(string)
  description = "More ION_* settings for every function, e.g. ION_JWT_ISSUER, ION_JWT_AUDIENCE, ION_JWKS_URL, ION_CORS_ORIGINS (the README lists them all). They override the common settings; a function's own settings in functions.tf override them."
  default     = {}

  validation {
    condition     = alltrue([for key in keys(var.extra_environment) : can(regex("^ION_[A-Z0-9_]+$", key))])
    error_message = "extra_environment keys must be ION_* settings."
  }
}

# --- scaling ---

variable "chat_max_instances" {
  type        = number
  description = "Maximum instances of the chat function (caps cost and Gemini quota use)."
  default     = 10
}

variable "chat_min_instances" {
  type        = number
  description = "Warm instances of the chat function in each region (0 = no idle cost, but the first request after idle pays the cold start: docs/performance.md)."
  default     = 0

  validation {
    condition     = var.chat_min_instances >= 0 && floor(var.chat_min_instances) == var.chat_min_instances
    error_message = "chat_min_instances must be a whole number >= 0."
  }
}

variable "chat_concurrency" {
  type        = number
  description = "Concurrent requests per chat instance (Cloud Run's max_instance_request_concurrency). Requests mostly wait on Gemini, so one vCPU serves many; gunicorn gets as many threads (THREADS), so none queues inside the instance (docs/performance.md)."
  default     = 20

  validation {
    condition     = var.chat_concurrency >= 1 && var.chat_concurrency <= 1000 && floor(var.chat_concurrency) == var.chat_concurrency
    error_message = "chat_concurrency must be a whole number from 1 to 1000."
  }
}

variable "chat_cpu" {
  type        = string
  description = "vCPUs per chat instance (Cloud Run's available_cpu): \"1\", \"2\", \"4\"... A concurrency above 1 needs at least 1 vCPU; each vCPU gets one gunicorn worker process (WORKERS)."
  default     = "1"

  validation {
    condition     = can(regex("^[1-8]$", var.chat_cpu))
    error_message = "chat_cpu must be a whole number of vCPUs from 1 to 8 (fractions force concurrency 1)."
  }
}

variable "route_min_instances" {
  type        = number
  description = "Warm instances of the persona_route function in each region (0 = no idle cost)."
  default     = 0

  validation {
    condition     = var.route_min_instances >= 0 && floor(var.route_min_instances) == var.route_min_instances
    error_message = "route_min_instances must be a whole number >= 0."
  }
}

variable "route_max_instances" {
  type        = number
  description = "Maximum instances of the persona_route function."
  default     = 5
}

variable "route_concurrency" {
  type        = number
  description = "Concurrent requests per persona_route instance (max_instance_request_concurrency; also its gunicorn THREADS)."
  default     = 40

  validation {
    condition     = var.route_concurrency >= 1 && var.route_concurrency <= 1000 && floor(var.route_concurrency) == var.route_concurrency
    error_message = "route_concurrency must be a whole number from 1 to 1000."
  }
}

variable "route_cpu" {
  type        = string
  description = "vCPUs per persona_route instance (available_cpu); one gunicorn worker per vCPU."
  default     = "1"

  validation {
    condition     = can(regex("^[1-8]$", var.route_cpu))
    error_message = "route_cpu must be a whole number of vCPUs from 1 to 8 (fractions force concurrency 1)."
  }
}

variable "startup_cpu_boost" {
  type        = bool
  description = "Startup CPU boost for the public APIs (chat, persona_route): Cloud Run gives an instance extra CPU while it starts (imports, model loading) and shortly after, so the first request after a scale-out waits less. The google provider cannot set it on a gen2 function; the pipeline applies this setting to each new revision before the canary (output startup_cpu_boost_services, scripts/rollout.sh, docs/deploy.md)."
  default     = true
  nullable    = false
}

variable "events_max_instances" {
  type        = number
  description = "Maximum instances of the persona_events consumer."
  default     = 3
}

variable "all_traffic_on_latest_revision" {
  type        = bool
  description = "For chat and persona_route: send all traffic to every new revision. false (default) leaves rollout to Cloud Build's canary (docs/deploy.md)."
  default     = false
}

# --- edge (edge.tf) ---

variable "edge_domains" {
  type        = list(string)
  description = "Domains the load balancer serves and its managed certificate covers (their DNS A records point at the edge_ip output)."

  validation {
    condition     = length(var.edge_domains) >= 1
    error_message = "edge_domains needs at least one domain."
  }
}

variable "web_domain" {
  type        = string
  description = "Domain of the learner web chat and operator page (web.tf), served by the same load balancer (its DNS A record points at the edge_ip output too). The APIs allow it as a CORS origin."

  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$", var.web_domain))
    error_message = "web_domain must be a lower-case domain name such as app.example.com."
  }
}

variable "web_firebase_api_key" {
  type        = string
  description = "Firebase Web API key (public, from the Firebase console) the web page signs learners in with (email and password). The APIs then need JWKS mode for Firebase tokens: ION_JWKS_URL, ION_JWT_ISSUER, ION_JWT_AUDIENCE in extra_environment (docs/deploy.md). null = the page has no sign-in."
  default     = null
}

variable "armor_waf_sensitivity" {
  type        = number
  description = "Sensitivity (paranoia level) of the OWASP CRS rules, 1-4: 1 evaluates only the signatures with the fewest false positives; each level adds stricter ones."
  default     = 1

  validation {
    condition     = contains([1, 2, 3, 4], var.armor_waf_sensitivity)
    error_message = "armor_waf_sensitivity must be 1, 2, 3 or 4."
  }
}

variable "armor_enforced_rules" {
  type        = list(string)
  description = "Cloud Armor rules that could refuse a real learner and are enforced rather than previewed: any of rate_ban, geo, sqli, xss, lfi, rfi, rce, scannerdetection, protocolattack, sessionfixation. Empty = all of them in preview (docs/operations.md says when to enforce each)."
  default     = []

  validation {
    condition     = alltrue([for name in var.armor_enforced_rules : contains(["rate_ban", "geo", "sqli", "xss", "lfi", "rfi", "rce", "scannerdetection", "protocolattack", "sessionfixation"], name)])
    error_message = "armor_enforced_rules may only name rate_ban, geo, sqli, xss, lfi, rfi, rce, scannerdetection, protocolattack or sessionfixation."
  }
}

variable "armor_trusted_ip_ranges" {
  type        = list(string)
  description = "CIDR ranges allowed before every other rule (e.g. your office or a load-test runner); empty = no allow-list rule."
  default     = []

  validation {
    condition     = length(var.armor_trusted_ip_ranges) <= 10
    error_message = "A Cloud Armor rule takes at most 10 ranges."
  }
}

variable "armor_allowed_regions" {
  type        = list(string)
  description = "ISO 3166-1 alpha-2 codes (e.g. KR, US): callers from elsewhere are refused. Empty = no geo rule. Uptime checks come from several continents: keep them in armor_trusted_ip_ranges or their regions here."
  default     = []

  validation {
    condition     = length(var.armor_allowed_regions) <= 5 && alltrue([for code in var.armor_allowed_regions : can(regex("^[A-Z]{2}$", code))])
    error_message = "armor_allowed_regions takes at most 5 two-letter upper-case codes (a rule has at most five subexpressions)."
  }
}

variable "armor_rate_limit_per_minute" {
  type        = number
  description = "Requests per minute one IP address may send; beyond it the edge answers 429, and an address still sending five times that over ten minutes is banned for armor_ban_seconds."
  default     = 300
}

variable "armor_ban_seconds" {
  type        = number
  description = "How long an address over the rate-ban threshold is refused."
  default     = 600
}

variable "armor_max_body_digits" {
  type        = number
  description = "The edge refuses bodies whose Content-Length has more than this many digits (5 = 100000 bytes or more); the app's own limit, ION_MAX_BODY_BYTES, is lower."
  default     = 5

  validation {
    condition     = var.armor_max_body_digits >= 4 && var.armor_max_body_digits <= 9
    error_message = "armor_max_body_digits must be between 4 and 9."
  }
}

# --- backups ---

variable "backup_bucket_name" {
  type        = string
  description = "Name of the backup bucket (globally unique); empty = <project_id>-ion-backups."
  default     = ""
}

variable "backup_location" {
  type        = string
  description = "Location of the backup bucket; match the Firestore location (nam5 -> US, eur3 -> EU, or the same region)."
  default     = "US"
}

variable "backup_prefix" {
  type        = string
  description = "Object prefix of the exports in the backup bucket (ION_BACKUP_PREFIX)."
  default     = "firestore"
}

variable "backup_retention_days" {
  type        = number
  description = "Days an export is kept; the bucket's lifecycle rule deletes older ones (ION_BACKUP_RETENTION_DAYS)."
  default     = 14

  validation {
    condition     = var.backup_retention_days >= 1
    error_message = "backup_retention_days must be at least 1."
  }
}

variable "firestore_backup_retention_days" {
  type        = number
  description = "Days each of Firestore's native daily backups is kept (google_firestore_backup_schedule; at most 98 = 14 weeks)."
  default     = 14

  validation {
    condition     = var.firestore_backup_retention_days >= 1 && var.firestore_backup_retention_days <= 98
    error_message = "firestore_backup_retention_days must be between 1 and 98."
  }
}

variable "backup_schedule" {
  type        = string
  description = "Cron schedule of the daily backup (Cloud Scheduler syntax)."
  default     = "0 3 * * *"
}

variable "backup_time_zone" {
  type        = string
  description = "Time zone of backup_schedule (tz database name)."
  default     = "Etc/UTC"
}

# --- monitoring ---

variable "alert_emails" {
  type        = list(string)
  description = "Email addresses notified by the alert policies (none = alerts only show in the console)."
  default     = []
}

variable "alert_webhook_url" {
  type        = string
  description = "Optional webhook (token-auth URL) that receives every alert as well; empty = none. The URL usually holds a token: pass it with TF_VAR_alert_webhook_url, not in a tfvars file."
  default     = ""
  sensitive   = true
}

variable "alert_extra_channels" {
  type        = list(string)
  description = "Ids (projects/P/notificationChannels/N) of channels made outside Terraform that receive every alert too, e.g. Slack, whose OAuth grant is only made in the console."
  default     = []
}

variable "slo_availability_goal" {
  type        = number
  description = "Share of chat requests answered without a 5xx of our own (Gemini's 503 llm_unavailable is counted by its own SLO), over 28 days."
  default     = 0.999
}

variable "slo_latency_goal" {
  type        = number
  description = "Share of chat turns whose first SSE event (`meta`) leaves within slo_latency_threshold_ms, over 28 days."
  default     = 0.99
}

variable "slo_latency_threshold_ms" {
  type        = number
  description = "Time-to-meta threshold of the latency SLO, in milliseconds."
  default     = 1000
}

variable "slo_llm_goal" {
  type        = number
  description = "Share of chat requests not answered 503 llm_unavailable (Gemini unreachable after retries and fallback), over 28 days."
  default     = 0.99
}

variable "billing_account" {
  type        = string
  description = "Billing account id (XXXXXX-XXXXXX-XXXXXX) the budget is set on; empty = no budget."
  default     = ""
}

variable "budget_amount" {
  type        = number
  description = "Monthly budget of the project, in budget_currency; alerts at 50, 90 and 100 % of actual spend and at 100 % of forecast spend (Gemini is most of it)."
  default     = 200
}

variable "budget_currency" {
  type        = string
  description = "Currency of budget_amount; must be the billing account's currency."
  default     = "USD"
}

variable "alert_5xx_ratio" {
  type        = number
  description = "Alert when more than this share of a function's requests answer 5xx over 5 minutes."
  default     = 0.05
}

variable "alert_chat_p95_ms" {
  type        = number
  description = "Alert when the chat function's p95 latency exceeds this many milliseconds (it includes the Gemini call)."
  default     = 20000
}

variable "alert_route_p95_ms" {
  type        = number
  description = "Alert when persona_route's p95 latency exceeds this many milliseconds."
  default     = 1000
}

variable "alert_llm_failures" {
  type        = number
  description = "Alert when more than this many Gemini attempts fail within 5 minutes."
  default     = 10
}

variable "alert_rate_limited" {
  type        = number
  description = "Alert when more than this many requests are rate limited (429) within 5 minutes."
  default     = 100
}

variable "safety_reviewers" {
  type        = list(string)
  description = "IAM members (e.g. group:ion-safety@example.com) who follow up crisis alerts: the only people granted read access to learners' conversations (roles/datastore.viewer). See docs/operations.md."
  default     = []
}

# --- delivery (cicd.tf) ---

variable "github_owner" {
  type        = string
  description = "GitHub owner of the repository Cloud Build deploys from (the Cloud Build GitHub app must be installed); empty = no deploy trigger."
  default     = ""
}

variable "github_repo" {
  type        = string
  description = "GitHub repository name Cloud Build deploys from."
  default     = "ion-mentoring"
}

variable "deploy_branch" {
  type        = string
  description = "Branch (regular expression) whose pushes, i.e. merges, start a deploy of this environment."
  default     = "^main$"
}

variable "deploy_requires_approval" {
  type        = bool
  description = "Hold each deploy build until someone with roles/cloudbuild.builds.approver approves it (prod)."
  default     = true
}

variable "deploy_service_account" {
  type        = string
  description = "Email of the service account deploy builds run as (it applies this Terraform); empty = the project's Cloud Build default."
  default     = ""
}
