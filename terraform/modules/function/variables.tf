variable "project_id" {
  type = string
}

variable "region" {
  type = string
}

variable "name" {
  description = "Deployed name (token-refresh), which is also the Cloud Run service name."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,48}[a-z0-9]$", var.name))
    error_message = "name must be a valid Cloud Run service name."
  }
}

variable "entry_point" {
  description = "Python function in main.py (the module name, token_refresh for token-refresh)."
  type        = string
}

variable "runtime" {
  type    = string
  default = "python311"
}

variable "source_bucket" {
  description = "Bucket that keeps the source bundles."
  type        = string
}

variable "bundle_path" {
  description = "Local path of the zip built by terraform/build_bundles.py."
  type        = string
}

variable "memory" {
  type    = string
  default = "512M"
}

variable "cpu" {
  type    = string
  default = "1"
}

variable "timeout" {
  type    = number
  default = 60
}

variable "concurrency" {
  type    = number
  default = 8
}

variable "min_instances" {
  type    = number
  default = 0
}

variable "max_instances" {
  type    = number
  default = 10
}

variable "service_account_email" {
  description = "The function's own runtime service account."
  type        = string
}

variable "build_service_account" {
  description = "Full resource name of the account Cloud Build uses to build the function."
  type        = string
}

variable "environment" {
  description = "Plain environment variables (settings of shared/config.py)."
  type        = map(string)
  default     = {}
}

variable "secret_environment" {
  description = "Environment variable -> Secret Manager secret id, mounted at the latest version."
  type        = map(string)
  default     = {}
}

variable "vpc_connector" {
  description = "Serverless VPC Access connector id, for Cloud SQL's private IP."
  type        = string
}

variable "public" {
  description = "Invokable by allUsers; the function authenticates its callers in code."
  type        = bool
  default     = false
}

variable "invoker_members" {
  description = "IAM members allowed to invoke a private function (serviceAccount:...)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for m in var.invoker_members : startswith(m, "serviceAccount:")])
    error_message = "Only service accounts may be named invokers of a private function."
  }
}

variable "labels" {
  type    = map(string)
  default = {}
}
