variable "project" {
  type        = string
  description = "Google Cloud project id the function is deployed to."
}

variable "region" {
  type        = string
  description = "Region of the function (and of its Cloud Run service)."
}

variable "name" {
  type        = string
  description = "Function name (also the Cloud Run service name): lowercase letters, digits and hyphens."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,48}[a-z0-9]$", var.name))
    error_message = "name must be 2-50 characters of lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "description" {
  type        = string
  description = "Human-readable description shown in the console."
  default     = ""
}

variable "source_bucket" {
  type        = string
  description = "Bucket that holds the uploaded source archives."
}

variable "source_zip" {
  type        = string
  description = "Local path of the source archive built by `make package` (dist/<function>.zip)."
}

variable "entry_point" {
  type        = string
  description = "Name of the Python function in main.py that the framework serves."
}

variable "runtime" {
  type        = string
  description = "Cloud Functions runtime id."
  default     = "python312"
}

variable "environment" {
  type        = map(string)
  description = "The function's environment variables (ION_* settings), complete: the caller merges shared and per-function settings."
  default     = {}
}

variable "secret_environment" {
  type = map(object({
    secret  = string
    version = string
  }))
  description = "Secret environment variables: variable name -> Secret Manager secret id and pinned version number (resolved when an instance starts)."
  default     = {}

  validation {
    condition     = alltrue([for item in values(var.secret_environment) : can(regex("^[1-9][0-9]*$", item.version))])
    error_message = "Pin secret versions by number: `latest` would let instances of one revision hold different values."
  }
}

variable "service_account_email" {
  type        = string
  description = "Runtime service account of the function."
}

variable "build_service_account" {
  type        = string
  description = "Full resource name of the service account Cloud Build uses to build the function (projects/P/serviceAccounts/EMAIL); null for the platform default."
  default     = null
}

variable "min_instances" {
  type        = number
  description = "Instances kept warm (0 = scale to zero, no idle cost)."
  default     = 0
}

variable "max_instances" {
  type        = number
  description = "Upper bound on instances: caps cost and protects Firestore and the LLM quota."
  default     = 10
}

variable "concurrency" {
  type        = number
  description = "Concurrent requests per instance (more than 1 needs at least 1 vCPU)."
  default     = 1
}

variable "cpu" {
  type        = string
  description = "vCPUs per instance (e.g. \"1\", \"0.583\")."
  default     = "1"
}

variable "memory" {
  type        = string
  description = "Memory per instance (e.g. \"512M\", \"1Gi\")."
  default     = "512M"
}

variable "timeout_seconds" {
  type        = number
  description = "Request timeout in seconds (HTTP functions at most 3600)."
  default     = 60
}

variable "ingress" {
  type        = string
  description = "Who may reach the function: ALLOW_INTERNAL_ONLY (Pub/Sub push and other internal callers) or ALLOW_INTERNAL_AND_GCLB (also the external load balancer). ALLOW_ALL is refused: it would bypass the load balancer's Cloud Armor policy."
  default     = "ALLOW_INTERNAL_ONLY"

  validation {
    condition     = contains(["ALLOW_INTERNAL_ONLY", "ALLOW_INTERNAL_AND_GCLB"], var.ingress)
    error_message = "ingress must be ALLOW_INTERNAL_ONLY or ALLOW_INTERNAL_AND_GCLB."
  }
}

variable "all_traffic_on_latest_revision" {
  type        = bool
  description = "Send all traffic to each new revision. false for canary rollouts: Cloud Build tags the new revision and moves traffic itself (docs/deploy.md)."
  default     = true
}

variable "public" {
  type        = bool
  description = "Grant roles/run.invoker to allUsers: the load balancer's serverless NEG calls without an identity, ingress keeps everyone else out, and the app authenticates callers with its own JWTs."
  default     = false
}

variable "invoker_members" {
  type        = list(string)
  description = "Members granted roles/run.invoker on the function's service (e.g. the Pub/Sub push identity)."
  default     = []
}

variable "labels" {
  type        = map(string)
  description = "Labels for the function and its source object."
  default     = {}
}
