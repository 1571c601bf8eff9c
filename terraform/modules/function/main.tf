# One Cloud Function (gen2) with its content-addressed source object and its invoker bindings.
#
# The object name carries the bundle's SHA-256, so a function whose bundle did not change keeps the same
# object and is not redeployed, and a change to main.py, shared/ or requirements.txt always is.

locals {
  bundle_sha256 = filesha256(var.bundle_path)
}

resource "google_storage_bucket_object" "source" {
  bucket = var.source_bucket
  name   = "${var.name}/${local.bundle_sha256}.zip"
  source = var.bundle_path
}

resource "google_cloudfunctions2_function" "this" {
  project  = var.project_id
  location = var.region
  name     = var.name
  labels   = var.labels

  build_config {
    runtime         = var.runtime
    entry_point     = var.entry_point
    service_account = var.build_service_account

    source {
      storage_source {
        bucket = var.source_bucket
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    available_memory                 = var.memory
    available_cpu                    = var.cpu
    timeout_seconds                  = var.timeout
    max_instance_request_concurrency = var.concurrency
    min_instance_count               = var.min_instances
    max_instance_count               = var.max_instances
    service_account_email            = var.service_account_email
    environment_variables            = var.environment
    all_traffic_on_latest_revision   = true
    ingress_settings                 = "ALLOW_ALL"

    # Only RFC 1918 traffic (Cloud SQL's private IP) goes through the connector; Gmail, HubSpot and
    # Google APIs are reached directly, so no Cloud NAT is needed.
    vpc_connector                 = var.vpc_connector
    vpc_connector_egress_settings = "PRIVATE_RANGES_ONLY"

    dynamic "secret_environment_variables" {
      for_each = var.secret_environment
      content {
        key        = secret_environment_variables.key
        project_id = var.project_id
        secret     = secret_environment_variables.value
        # "latest" is resolved when an instance starts, so a rotated secret reaches new instances
        # without a deploy (docs/runbooks/rotate-hubspot-secret.md).
        version = "latest"
      }
    }
  }
}

# Gen2 functions are Cloud Run services: the invoker check is run.invoker on the service, bound here
# per function, never on the project.
resource "google_cloud_run_v2_service_iam_member" "invoker" {
  for_each = toset(var.public ? ["allUsers"] : var.invoker_members)

  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.this.name
  role     = "roles/run.invoker"
  member   = each.value
}
