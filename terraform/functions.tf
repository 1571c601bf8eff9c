# The nine functions, their service accounts, and what each account may do.

# --- service accounts ----------------------------------------------------------------------------

# One runtime account per function, so a compromised function holds only its own grants.
resource "google_service_account" "function" {
  for_each = var.functions

  account_id   = "fn-${each.key}"
  display_name = "LeadVoice function ${each.key}"
}

# Callers get accounts of their own; the functions accept OIDC tokens only from these emails
# (TASKS_SERVICE_ACCOUNT, PUBSUB_SERVICE_ACCOUNT, SCHEDULER_SERVICE_ACCOUNT).
resource "google_service_account" "caller" {
  for_each = {
    tasks     = "tasks-invoker"
    pubsub    = "pubsub-push"
    scheduler = "scheduler"
  }

  account_id   = each.value
  display_name = "LeadVoice caller: ${each.key}"
}

# Builds the function images, instead of the default compute account and its broad Editor role.
resource "google_service_account" "builder" {
  account_id   = "function-builder"
  display_name = "LeadVoice function builds"
}

# --- project-level roles of each function --------------------------------------------------------
# Only roles that have no narrower resource to bind to live here; topic, queue, bucket and secret
# grants are on those resources (messaging.tf, storage.tf, secrets.tf).

locals {
  function_project_roles = {
    webhook = [
      "roles/cloudsql.client",       # connect through the Cloud SQL connector (leads, workflows)
      "roles/cloudsql.instanceUser", # log in with IAM database authentication
      "roles/datastore.user",        # circuit breakers and flags in Firestore
    ]
    ingest = [
      "roles/cloudsql.client",       # training samples and voice profiles
      "roles/cloudsql.instanceUser", # IAM database authentication
      "roles/aiplatform.user",       # embeds the text of POST /ingest/profile/match
    ]
    extract = [
      "roles/cloudsql.client",       # writes the extracted text of a sample
      "roles/cloudsql.instanceUser", # IAM database authentication
      "roles/datastore.user",        # circuit breakers around HubSpot, Drive and YouTube
    ]
    embed = [
      "roles/cloudsql.client",       # upserts chunks into pgvector, rebuilds voice profiles
      "roles/cloudsql.instanceUser", # IAM database authentication
      "roles/datastore.user",        # circuit breaker around Vertex AI
      "roles/aiplatform.user",       # Vertex AI text embeddings
    ]
    draft = [
      "roles/cloudsql.client",       # reads exemplars, writes draft_emails
      "roles/cloudsql.instanceUser", # IAM database authentication
      "roles/datastore.user",        # circuit breakers around HubSpot and Vertex AI
      "roles/aiplatform.user",       # Gemini generation and query embeddings
    ]
    gate = [
      "roles/cloudsql.client",       # reads the draft, records the decision
      "roles/cloudsql.instanceUser", # IAM database authentication
      "roles/datastore.user",        # flags, kill switch, breakers, quotas and guardrails
    ]
    send = [
      "roles/cloudsql.client",       # records Gmail ids and the final state
      "roles/cloudsql.instanceUser", # IAM database authentication
      "roles/datastore.user",        # last-moment kill switch read, quota release
    ]
    token-refresh = [
      "roles/cloudsql.client",       # reps' connection state
      "roles/cloudsql.instanceUser", # IAM database authentication
      "roles/datastore.user",        # circuit breaker around Google's token endpoint
    ]
    admin = [
      "roles/cloudsql.client",       # dashboard queries
      "roles/cloudsql.instanceUser", # IAM database authentication
      "roles/datastore.user",        # flags, quotas, guardrails and their audit
    ]
  }
}

resource "google_project_iam_member" "function" {
  for_each = {
    for pair in flatten([
      for fn, roles in local.function_project_roles : [for role in roles : { fn = fn, role = role }]
    ]) : "${pair.fn} ${pair.role}" => pair
  }

  project = var.project_id
  role    = each.value.role
  member  = google_service_account.function[each.value.fn].member
}

# token-refresh creates, versions and destroys each rep's refresh-token secret at run time, so it needs
# secretmanager.admin — but only on secrets whose name starts with the google-refresh prefix. The condition
# cannot be written on a secret that does not exist yet, hence a project binding restricted by name.
resource "google_project_iam_member" "token_refresh_rep_secrets" {
  project = var.project_id
  role    = "roles/secretmanager.admin"
  member  = google_service_account.function["token-refresh"].member

  condition {
    title       = "google-refresh-secrets-only"
    description = "Only the per-rep OAuth refresh-token secrets and the key that signs the connect flow's state."
    expression  = "resource.name.startsWith(\"projects/${data.google_project.this.number}/secrets/${var.rep_token_secret_prefix}\") || resource.name.startsWith(\"projects/${data.google_project.this.number}/secrets/google-oauth-state-key\")"
  }
}

# Functions that call Gmail, Drive or Calendar on a rep's behalf read that rep's refresh token
# (draft reads the rep's free/busy to offer meeting times).
resource "google_project_iam_member" "rep_secret_readers" {
  for_each = toset(["webhook", "extract", "draft", "send"])

  project = var.project_id
  role    = "roles/secretmanager.secretAccessor"
  member  = google_service_account.function[each.key].member

  condition {
    title       = "google-refresh-secrets-only"
    description = "Read the per-rep OAuth refresh tokens, nothing else."
    expression  = "resource.name.startsWith(\"projects/${data.google_project.this.number}/secrets/${var.rep_token_secret_prefix}\")"
  }
}

# --- the build account ---------------------------------------------------------------------------

resource "google_project_iam_member" "builder" {
  for_each = toset([
    "roles/logging.logWriter",       # build logs
    "roles/artifactregistry.writer", # pushes the function images to gcf-artifacts
  ])

  project = var.project_id
  role    = each.value
  member  = google_service_account.builder.member
}

# --- the functions -------------------------------------------------------------------------------

module "function" {
  source   = "./modules/function"
  for_each = var.functions

  project_id    = var.project_id
  region        = var.region
  name          = each.key
  entry_point   = each.value.entry_point
  runtime       = each.value.runtime
  memory        = each.value.memory
  cpu           = each.value.cpu
  timeout       = each.value.timeout
  concurrency   = each.value.concurrency
  min_instances = each.value.min_instances
  max_instances = each.value.max_instances
  labels        = local.labels

  source_bucket         = google_storage_bucket.sources.name
  bundle_path           = "${var.bundle_dir}/${replace(each.key, "-", "_")}.zip"
  service_account_email = google_service_account.function[each.key].email
  build_service_account = google_service_account.builder.id
  vpc_connector         = google_vpc_access_connector.functions.id

  environment = merge(local.common_environment, {
    # IAM database users are named after the account's email without ".gserviceaccount.com".
    DB_USER = trimsuffix(google_service_account.function[each.key].email, ".gserviceaccount.com")
    # True exactly on the private functions: Cloud Run has verified the caller's token (docs/adr/003).
    PLATFORM_VERIFIES_INVOKER = each.value.public ? "false" : "true"
  })
  secret_environment = local.secret_environment

  public          = each.value.public
  invoker_members = [for caller in each.value.invokers : google_service_account.caller[caller].member]

  depends_on = [
    google_project_service.enabled,
    google_secret_manager_secret_iam_member.reader,
    google_storage_bucket_iam_member.builder_sources,
  ]
}
