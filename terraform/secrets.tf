# Secrets are declared here; their values are added by hand (docs/deploy.md) so they never sit in the
# Terraform state. Per-rep refresh-token secrets ("<rep_token_secret_prefix><rep id>") are created at
# run time by token-refresh (functions.tf grants it that, and nothing more).

locals {
  secrets = ["hubspot-client-secret", "hubspot-access-token", "google-oauth-client-secret"]

  # Secret -> functions that read it.
  secret_readers = {
    # Verifies webhook signatures; shared/config.py requires it in every function, so all mount it.
    "hubspot-client-secret" = keys(var.functions)
    # HubSpot records for training (extract), enrichment (draft), the task and note (send).
    "hubspot-access-token" = ["extract", "draft", "send"]
    # The OAuth connect flow (token-refresh) and exchanging a rep's refresh token for an access token
    # (Gmail history sync in webhook, Drive in extract, Gmail send in send).
    "google-oauth-client-secret" = ["token-refresh", "webhook", "extract", "send"]
  }
}

resource "google_secret_manager_secret" "app" {
  for_each = toset(local.secrets)

  secret_id = each.value
  labels    = local.labels

  replication {
    auto {}
  }

  depends_on = [google_project_service.enabled]
}

resource "google_secret_manager_secret_iam_member" "reader" {
  for_each = {
    for pair in flatten([for s, fns in local.secret_readers : [for fn in fns : { secret = s, fn = fn }]]) :
    "${pair.secret} ${pair.fn}" => pair
  }

  secret_id = google_secret_manager_secret.app[each.value.secret].id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.function[each.value.fn].member
}
