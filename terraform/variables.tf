variable "project_id" {
  description = "Google Cloud project that holds everything."
  type        = string

  validation {
    # https://cloud.google.com/resource-manager/docs/creating-managing-projects: 6-30 chars.
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a Google Cloud project id (6-30 lowercase letters, digits, hyphens)."
  }
}

variable "region" {
  description = "Region of the functions, queues, Cloud SQL, buckets and Vertex AI (REGION in shared/config.py)."
  type        = string
  default     = "us-central1"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]$", var.region))
    error_message = "region must look like us-central1."
  }
}

variable "firestore_location" {
  description = "Firestore location (a region or a multi-region such as nam5). Cannot change after creation."
  type        = string
  default     = "nam5"
}

variable "domain" {
  description = "Domain of the web front door (pages and public APIs); its DNS A record must point at the web_ip output."
  type        = string

  validation {
    condition     = can(regex("^([a-z0-9-]+\\.)+[a-z]{2,}$", var.domain))
    error_message = "domain must be a fully qualified domain name such as leadvoice.example.com."
  }
}

variable "allowed_domains" {
  description = "Email domains whose people may sign in as reps (ALLOWED_DOMAINS)."
  type        = list(string)

  validation {
    condition     = length(var.allowed_domains) > 0 && alltrue([for d in var.allowed_domains : can(regex("^([a-z0-9-]+\\.)+[a-z]{2,}$", d))])
    error_message = "allowed_domains must list at least one lowercase domain."
  }
}

variable "ops_emails" {
  description = "Emails with the ops role (OPS_EMAILS)."
  type        = list(string)

  validation {
    condition     = length(var.ops_emails) > 0 && alltrue([for e in var.ops_emails : can(regex("^[^@\\s]+@[^@\\s]+\\.[a-z]{2,}$", e))])
    error_message = "ops_emails must list at least one email address."
  }
}

variable "alert_email" {
  description = "Where alerts are emailed."
  type        = string

  validation {
    condition     = can(regex("^[^@\\s]+@[^@\\s]+\\.[a-z]{2,}$", var.alert_email))
    error_message = "alert_email must be an email address."
  }
}

variable "hubspot_portal_id" {
  description = "HubSpot portal (account) id the app is installed in; kept in labels and docs links."
  type        = string

  validation {
    condition     = can(regex("^[0-9]+$", var.hubspot_portal_id))
    error_message = "hubspot_portal_id is the numeric HubSpot account id."
  }
}

variable "oauth_client_id" {
  description = "OAuth 2.0 web client id (GOOGLE_OAUTH_CLIENT_ID); created by hand, see docs/deploy.md."
  type        = string

  validation {
    condition     = endswith(var.oauth_client_id, ".apps.googleusercontent.com")
    error_message = "oauth_client_id must end with .apps.googleusercontent.com."
  }
}

variable "bundle_dir" {
  description = "Folder of the function bundles written by terraform/build_bundles.py (<module>.zip each)."
  type        = string
  default     = "../build/bundles"
}

variable "embedding_model" {
  description = "Vertex AI embedding model (EMBEDDING_MODEL); a change re-embeds every chunk."
  type        = string
  default     = "text-embedding-005"
}

variable "embedding_dim" {
  description = "Dimension of embedding_model (EMBEDDING_DIM)."
  type        = number
  default     = 768

  validation {
    # pgvector's HNSW index takes at most 2,000 dimensions.
    condition     = var.embedding_dim > 0 && var.embedding_dim <= 2000
    error_message = "embedding_dim must be between 1 and 2000."
  }
}

variable "generation_model" {
  description = "Gemini model that writes drafts (GENERATION_MODEL)."
  type        = string
  default     = "gemini-2.5-flash"
}

variable "db_tier" {
  description = "Cloud SQL machine type."
  type        = string
  default     = "db-custom-2-7680"
}

variable "db_availability" {
  description = "REGIONAL (a standby in another zone) or ZONAL."
  type        = string
  default     = "REGIONAL"

  validation {
    condition     = contains(["REGIONAL", "ZONAL"], var.db_availability)
    error_message = "db_availability must be REGIONAL or ZONAL."
  }
}

variable "send_dispatches_per_second" {
  description = "Most Gmail sends Cloud Tasks starts per second across all reps (send-queue)."
  type        = number
  default     = 1

  validation {
    condition     = var.send_dispatches_per_second > 0 && var.send_dispatches_per_second <= 5
    error_message = "send_dispatches_per_second must be in (0, 5]: Gmail punishes bursts (see messaging.tf)."
  }
}

variable "uploads_retention_days" {
  description = "Days raw uploads are kept after extraction; their text lives on in Postgres."
  type        = number
  default     = 30

  validation {
    condition     = var.uploads_retention_days >= 1 && var.uploads_retention_days <= 365
    error_message = "uploads_retention_days must be between 1 and 365."
  }
}

variable "rep_token_secret_prefix" {
  description = "Prefix of the per-rep OAuth refresh-token secrets that token-refresh creates at run time."
  type        = string
  default     = "google-refresh-"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*-$", var.rep_token_secret_prefix))
    error_message = "rep_token_secret_prefix must be lowercase, start with a letter and end with a hyphen."
  }
}

variable "functions" {
  description = "The nine functions of shared/topology.FUNCTIONS, by deployed name."
  type = map(object({
    entry_point   = string
    runtime       = optional(string, "python311")
    memory        = optional(string, "512M")
    cpu           = optional(string, "1")
    timeout       = optional(number, 60)
    concurrency   = optional(number, 8)
    min_instances = optional(number, 0)
    max_instances = optional(number, 10)
    # Public functions are invokable by allUsers and authenticate callers in code (HubSpot signature,
    # Google ID tokens, OIDC); private ones are behind Cloud Run's IAM check.
    public = optional(bool, false)
    # Caller accounts allowed to invoke a private function: keys of google_service_account.caller.
    invokers = optional(list(string), [])
  }))

  default = {
    # HubSpot retries a webhook that is not answered within 5 s, so one warm instance stays up.
    webhook = { entry_point = "webhook", public = true, min_instances = 1, concurrency = 40, timeout = 30 }
    ingest  = { entry_point = "ingest", public = true, memory = "1Gi", timeout = 120 }
    # Extraction runs parsers on hostile files in a child process: memory headroom, one request at a time.
    extract = { entry_point = "extract", memory = "2Gi", cpu = "1", concurrency = 1, timeout = 540, invokers = ["tasks"] }
    embed   = { entry_point = "embed", memory = "1Gi", concurrency = 4, timeout = 300, invokers = ["tasks"] }
    draft   = { entry_point = "draft", memory = "1Gi", concurrency = 4, timeout = 300, invokers = ["tasks"] }
    gate    = { entry_point = "gate", concurrency = 8, timeout = 60, invokers = ["pubsub"] }
    # Sends are throttled by send-queue; more instances would not send faster.
    send          = { entry_point = "send", concurrency = 4, max_instances = 5, timeout = 120, invokers = ["tasks"] }
    token-refresh = { entry_point = "token_refresh", public = true, timeout = 540, max_instances = 2, concurrency = 1 }
    admin         = { entry_point = "admin", public = true, concurrency = 20 }
  }

  validation {
    condition = toset(keys(var.functions)) == toset([
      "webhook", "ingest", "extract", "embed", "draft", "gate", "send", "token-refresh", "admin",
    ])
    error_message = "functions must describe exactly the nine functions of shared/topology.FUNCTIONS."
  }

  validation {
    # The Python package of `token-refresh` is functions/token_refresh; its entry point has that name.
    condition     = alltrue([for name, f in var.functions : f.entry_point == replace(name, "-", "_")])
    error_message = "Each entry_point must be the function's module name (token-refresh -> token_refresh)."
  }

  validation {
    condition     = alltrue([for f in values(var.functions) : f.runtime == "python311"])
    error_message = "Every function runs on python311, the version the project is tested on."
  }

  validation {
    condition     = alltrue([for f in values(var.functions) : f.min_instances <= f.max_instances && f.concurrency >= 1 && f.timeout <= 3600])
    error_message = "min_instances must not exceed max_instances; concurrency >= 1; timeout <= 3600 s."
  }

  validation {
    condition     = alltrue([for f in values(var.functions) : f.public ? length(f.invokers) == 0 : length(f.invokers) > 0])
    error_message = "A public function lists no invokers; a private one lists at least one."
  }

  validation {
    condition     = alltrue(flatten([for f in values(var.functions) : [for i in f.invokers : contains(["tasks", "pubsub", "scheduler"], i)]]))
    error_message = "invokers may only name the caller accounts tasks, pubsub and scheduler."
  }
}
