# Buckets: function sources, rep uploads, and the web pages.

# Content-addressed function bundles (modules/function). An object's name is its hash, so objects are
# never overwritten; versioning only guards against a deletion by mistake.
resource "google_storage_bucket" "sources" {
  name                        = "${var.project_id}-function-sources"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false
  labels                      = local.labels

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      num_newer_versions = 3
    }
    action {
      type = "Delete"
    }
  }
}

resource "google_storage_bucket_iam_member" "builder_sources" {
  bucket = google_storage_bucket.sources.name
  role   = "roles/storage.objectViewer" # Cloud Build reads the bundle it builds
  member = google_service_account.builder.member
}

# Raw uploads of training material. Their extracted, PII-scrubbed text lives in Postgres, so the raw
# file is deleted after a retention period; versioning keeps an overwritten or deleted file for a week.
resource "google_storage_bucket" "uploads" {
  name                        = "${var.project_id}-uploads"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false
  labels                      = local.labels

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      age = var.uploads_retention_days
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 7
    }
    action {
      type = "Delete"
    }
  }

  # Interrupted resumable uploads otherwise linger and are billed.
  lifecycle_rule {
    condition {
      age = 1
    }
    action {
      type = "AbortIncompleteMultipartUpload"
    }
  }
}

resource "google_storage_bucket_iam_member" "uploads" {
  for_each = {
    ingest  = "roles/storage.objectUser"   # stores uploads, deletes them with their sample
    extract = "roles/storage.objectViewer" # reads the raw file it extracts
  }

  bucket = google_storage_bucket.uploads.name
  role   = each.value
  member = google_service_account.function[each.key].member
}

# The pages of frontend/, served by the load balancer in web.tf. A backend bucket can only serve
# objects that allUsers may read, so this bucket — and only this one — is public; it holds nothing but
# the static pages and config.json (API base URL and OAuth client id, both public by nature).
resource "google_storage_bucket" "website" {
  name                        = "${var.project_id}-website"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "inherited"
  force_destroy               = true # the pages are rebuilt from the repository on every deploy
  labels                      = local.labels

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      num_newer_versions = 5
    }
    action {
      type = "Delete"
    }
  }

  website {
    main_page_suffix = "index.html"
  }
}

resource "google_storage_bucket_iam_member" "website_public" {
  bucket = google_storage_bucket.website.name
  role   = "roles/storage.objectViewer"
  member = "allUsers"
}
