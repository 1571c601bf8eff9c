# Cloud SQL for PostgreSQL (pgvector) and Firestore.

# POSTGRES_17: the newest major Cloud SQL offers with pgvector (0.8 on current maintenance versions);
# the local stack's embedded PostgreSQL 18 runs the same SQL.
resource "google_sql_database_instance" "main" {
  name                = "leadvoice"
  region              = var.region
  database_version    = "POSTGRES_17"
  deletion_protection = true # Terraform refuses to destroy it

  settings {
    tier                        = var.db_tier
    edition                     = "ENTERPRISE"
    availability_type           = var.db_availability
    disk_autoresize             = true
    disk_type                   = "PD_SSD"
    deletion_protection_enabled = true # the API refuses to delete it, whoever asks
    user_labels                 = local.labels

    ip_configuration {
      ipv4_enabled    = false # private IP only
      private_network = google_compute_network.main.id
      # Every connection is TLS; the Cloud SQL connector brings its own certificates.
      ssl_mode = "ENCRYPTED_ONLY"
    }

    backup_configuration {
      enabled                        = true
      start_time                     = "03:00"
      point_in_time_recovery_enabled = true
      transaction_log_retention_days = 7

      backup_retention_settings {
        retained_backups = 14
        retention_unit   = "COUNT"
      }
    }

    maintenance_window {
      day          = 7 # Sunday
      hour         = 4
      update_track = "stable"
    }

    # Slow queries are found with Query Insights, which keeps normalised statements without their
    # parameters; log_min_duration_statement stays -1 because a logged statement carries its
    # parameter values, and those are leads' personal data (DESIGN §7: no PII in any log line).
    insights_config {
      query_insights_enabled  = true
      query_string_length     = 1024
      record_application_tags = true
      record_client_address   = false
    }

    database_flags {
      name  = "cloudsql.iam_authentication"
      value = "on"
    }
    database_flags {
      name  = "log_connections"
      value = "on"
    }
    database_flags {
      name  = "log_disconnections"
      value = "on"
    }
    database_flags {
      name  = "log_checkpoints"
      value = "on"
    }
    database_flags {
      name  = "log_lock_waits"
      value = "on"
    }
    database_flags {
      name  = "log_duration" # the duration of every statement, without its text or parameters
      value = "on"
    }
    database_flags {
      name  = "log_min_duration_statement"
      value = "-1"
    }
    database_flags {
      name  = "log_min_messages"
      value = "error"
    }
    database_flags {
      name  = "log_min_error_statement"
      value = "error"
    }
    database_flags {
      name  = "log_statement"
      value = "ddl"
    }
    database_flags {
      name  = "log_hostname"
      value = "on"
    }
    database_flags {
      name  = "cloudsql.enable_pgaudit"
      value = "on"
    }
  }

  depends_on = [google_service_networking_connection.private_services]
}

resource "google_sql_database" "app" {
  name     = "leadvoice"
  instance = google_sql_database_instance.main.name
}

# One IAM database user per function account: no passwords to store or rotate.
resource "google_sql_user" "function" {
  for_each = var.functions

  instance = google_sql_database_instance.main.name
  name     = trimsuffix(google_service_account.function[each.key].email, ".gserviceaccount.com")
  type     = "CLOUD_IAM_SERVICE_ACCOUNT"
}

# The deploy pipeline (cloudbuild.yaml) runs as this account and applies the migrations with it, so it
# owns the tables; the migrations grant the function users what they need. Its rights to apply
# Terraform are granted once by hand (docs/deploy.md): Terraform cannot bootstrap its own rights.
resource "google_service_account" "deployer" {
  account_id   = "leadvoice-deployer"
  display_name = "LeadVoice Cloud Build deployer"
}

resource "google_sql_user" "deployer" {
  instance = google_sql_database_instance.main.name
  name     = trimsuffix(google_service_account.deployer.email, ".gserviceaccount.com")
  type     = "CLOUD_IAM_SERVICE_ACCOUNT"
}

resource "google_project_iam_member" "deployer_database" {
  for_each = toset([
    "roles/cloudsql.client",       # connect through the Cloud SQL connector for migrations
    "roles/cloudsql.instanceUser", # IAM database authentication
  ])

  project = var.project_id
  role    = each.value
  member  = google_service_account.deployer.member
}

# The migrate step loads Settings like a function does, and HUBSPOT_CLIENT_SECRET is required there.
resource "google_secret_manager_secret_iam_member" "deployer_hubspot" {
  secret_id = google_secret_manager_secret.app["hubspot-client-secret"].id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.deployer.member
}

# Cloud SQL has only a private IP, which Cloud Build's default workers cannot reach: the pipeline runs
# on a private pool peered with the same network through private service access.
resource "google_cloudbuild_worker_pool" "private" {
  name     = "leadvoice"
  location = var.region

  worker_config {
    machine_type   = "e2-standard-4"
    disk_size_gb   = 100
    no_external_ip = false # pip, the Terraform image and the provider registry are on the internet
  }

  network_config {
    peered_network = google_compute_network.main.id
  }

  depends_on = [google_service_networking_connection.private_services]
}

# --- Firestore -----------------------------------------------------------------------------------

resource "google_firestore_database" "main" {
  name                              = "(default)"
  location_id                       = var.firestore_location
  type                              = "FIRESTORE_NATIVE"
  point_in_time_recovery_enablement = "POINT_IN_TIME_RECOVERY_ENABLED"
  delete_protection_state           = "DELETE_PROTECTION_ENABLED"
  deletion_policy                   = "ABANDON"
  depends_on                        = [google_project_service.enabled]
}

# Quota documents carry `expires_at` (shared/quotas.py); Firestore deletes them after that time.
resource "google_firestore_field" "quota_ttl" {
  for_each = toset(["quota_slots", "quota_holds", "quota_reservations"])

  database   = google_firestore_database.main.name
  collection = each.value
  field      = "expires_at"

  ttl_config {}
}
