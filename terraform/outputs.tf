output "public_base_url" {
  description = "PUBLIC_BASE_URL: pages at /, public APIs at /<function>."
  value       = local.public_base_url
}

output "web_ip" {
  description = "Point the domain's A record here."
  value       = google_compute_global_address.web.address
}

output "function_urls" {
  description = "run.app URL of each function."
  value       = { for name, m in module.function : name => m.url }
}

output "function_source_objects" {
  description = "The bundle object each function was built from."
  value       = { for name, m in module.function : name => m.source_object }
}

output "function_service_accounts" {
  value = { for name, sa in google_service_account.function : name => sa.email }
}

output "caller_service_accounts" {
  value = { for key, sa in google_service_account.caller : key => sa.email }
}

output "deployer_service_account" {
  description = "The account the Cloud Build trigger runs as (docs/deploy.md)."
  value       = google_service_account.deployer.email
}

output "worker_pool" {
  value = google_cloudbuild_worker_pool.private.id
}

output "migrate_environment" {
  description = "Settings for `python -m functions migrate --production`, run as the deployer."
  value = merge(local.common_environment, {
    DB_USER = trimsuffix(google_service_account.deployer.email, ".gserviceaccount.com")
  })
}

output "uploads_bucket" {
  value = google_storage_bucket.uploads.name
}

output "website_bucket" {
  value = google_storage_bucket.website.name
}

output "sources_bucket" {
  value = google_storage_bucket.sources.name
}

output "topics" {
  value = { for name, t in google_pubsub_topic.main : name => t.id }
}

output "push_subscriptions" {
  value = { for name, s in google_pubsub_subscription.push : name => s.id }
}

output "dead_letter_subscriptions" {
  value = { for name, s in google_pubsub_subscription.dead_letter : name => s.id }
}

output "queues" {
  value = { for target, q in google_cloud_tasks_queue.main : target => q.id }
}

output "db_instance" {
  description = "DB_INSTANCE: the Cloud SQL connection name."
  value       = google_sql_database_instance.main.connection_name
}

output "oauth_client_id" {
  value = var.oauth_client_id
}

output "oauth_redirect_uri" {
  description = "Register this as an authorised redirect URI of the OAuth client."
  value       = "${local.public_base_url}/token-refresh/callback"
}

output "hubspot_webhook_url" {
  description = "Target URL of the HubSpot webhook subscription and workflow webhook."
  value       = "${local.public_base_url}/webhook/hubspot"
}
