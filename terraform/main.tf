# LeadVoice on Google Cloud. Names here follow the code: topics, push subscription ids and queue names
# are those of shared/topology.py and shared/adapters/pubsub.subscription_id; environment variable names
# are those of shared/config.FIELDS.

data "google_project" "this" {
  project_id = var.project_id
}

locals {
  labels = {
    app            = "leadvoice"
    hubspot-portal = var.hubspot_portal_id
  }

  # Cloud Run's deterministic URL: https://<service>-<project number>.<region>.run.app. Known before the
  # functions exist, so every function can be told every other one's URL (OIDC audiences, push
  # endpoints) without a dependency cycle.
  function_url_template = "https://{name}-${data.google_project.this.number}.${var.region}.run.app"
  function_url          = { for name in keys(var.functions) : name => replace(local.function_url_template, "{name}", name) }

  # The public front door (web.tf): pages at /, each public function at /<name>, as on the local stack.
  # HubSpot signs PUBLIC_BASE_URL + /webhook/hubspot, so this must be the URL HubSpot is given.
  public_base_url = "https://${var.domain}"

  # Settings of shared/config.FIELDS that are the same for every function.
  common_environment = {
    ENV                       = "production"
    ADAPTERS                  = "google"
    GOOGLE_CLOUD_PROJECT      = var.project_id
    REGION                    = var.region
    PUBLIC_BASE_URL           = local.public_base_url
    FUNCTION_URL_TEMPLATE     = local.function_url_template
    ALLOWED_DOMAINS           = join(",", var.allowed_domains)
    OPS_EMAILS                = join(",", var.ops_emails)
    GOOGLE_OAUTH_CLIENT_ID    = var.oauth_client_id
    TASKS_SERVICE_ACCOUNT     = google_service_account.caller["tasks"].email
    PUBSUB_SERVICE_ACCOUNT    = google_service_account.caller["pubsub"].email
    SCHEDULER_SERVICE_ACCOUNT = google_service_account.caller["scheduler"].email
    DB_INSTANCE               = google_sql_database_instance.main.connection_name
    DB_NAME                   = google_sql_database.app.name
    FIRESTORE_DATABASE        = google_firestore_database.main.name
    UPLOADS_BUCKET            = google_storage_bucket.uploads.name
    EMBEDDING_MODEL           = var.embedding_model
    EMBEDDING_DIM             = tostring(var.embedding_dim)
    GENERATION_MODEL          = var.generation_model
    LOG_LEVEL                 = "INFO"
  }

  # Secret settings, mounted from Secret Manager rather than written into the function's configuration.
  # shared/config.py requires HUBSPOT_CLIENT_SECRET in every function, so every one mounts it.
  secret_environment = {
    HUBSPOT_CLIENT_SECRET = google_secret_manager_secret.app["hubspot-client-secret"].secret_id
  }
}

# APIs the deployment uses. disable_on_destroy = false: destroying this stack must not switch off an
# API that something else in the project may use.
resource "google_project_service" "enabled" {
  for_each = toset([
    "aiplatform.googleapis.com",
    "artifactregistry.googleapis.com",
    "calendar-json.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudscheduler.googleapis.com",
    "cloudtasks.googleapis.com",
    "compute.googleapis.com",
    "drive.googleapis.com",
    "firestore.googleapis.com",
    "gmail.googleapis.com",
    "iam.googleapis.com",
    "iamcredentials.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "servicenetworking.googleapis.com",
    "sqladmin.googleapis.com",
    "storage.googleapis.com",
    "vpcaccess.googleapis.com",
  ])

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}
