# --- project and placement ---

variable "project_id" {
  type        = string
  description = "Google Cloud project id to deploy into."
}

variable "region" {
  type        = string
  description = "Region of the functions, the scheduler job and the Pub/Sub push endpoints."
  default     = "us-central1"
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
  description = "Warm instances of the chat function (0 = no idle cost, cold starts of a few seconds)."
  default     = 0
}

variable "chat_concurrency" {
  type        = number
  description = "Concurrent requests per chat instance (requests mostly wait on Gemini)."
  default     = 20
}

variable "route_max_instances" {
  type        = number
  description = "Maximum instances of the persona_route function."
  default     = 5
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
