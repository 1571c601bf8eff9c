# The public front door: one HTTPS origin for the pages and the public APIs.
#
# - The pages need an origin of their own: the OAuth client's authorised JavaScript origin must not be
#   storage.googleapis.com, which every bucket in the world shares.
# - HubSpot signs PUBLIC_BASE_URL + /webhook/hubspot, and the OAuth redirect is
#   PUBLIC_BASE_URL + /token-refresh/callback: the same paths as on the local stack, where each function
#   is mounted at /<name> and sees the rest of the path. The URL map does the same here: /<name>/rest
#   reaches function <name> as /rest.
# - Same origin for pages and APIs: no CORS.
# Private functions are not routed; they keep only their run.app URL behind the IAM check.

locals {
  public_functions = [for name, f in var.functions : name if f.public]
}

resource "google_compute_global_address" "web" {
  name       = "leadvoice-web"
  depends_on = [google_project_service.enabled]
}

resource "google_compute_backend_bucket" "web" {
  name        = "leadvoice-web"
  bucket_name = google_storage_bucket.website.name
  enable_cdn  = true
}

resource "google_compute_region_network_endpoint_group" "public" {
  for_each = toset(local.public_functions)

  name                  = "leadvoice-${each.key}"
  region                = var.region
  network_endpoint_type = "SERVERLESS"

  # A gen2 function is the Cloud Run service of the same name.
  cloud_run {
    service = module.function[each.key].name
  }
}

resource "google_compute_backend_service" "public" {
  for_each = toset(local.public_functions)

  name                  = "leadvoice-${each.key}"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  protocol              = "HTTPS"

  backend {
    group = google_compute_region_network_endpoint_group.public[each.key].id
  }

  log_config {
    enable      = true
    sample_rate = 1.0
  }
}

resource "google_compute_url_map" "web" {
  name            = "leadvoice-web"
  default_service = google_compute_backend_bucket.web.id

  host_rule {
    hosts        = [var.domain]
    path_matcher = "leadvoice"
  }

  path_matcher {
    name            = "leadvoice"
    default_service = google_compute_backend_bucket.web.id

    dynamic "path_rule" {
      for_each = toset(local.public_functions)
      content {
        paths   = ["/${path_rule.value}", "/${path_rule.value}/*"]
        service = google_compute_backend_service.public[path_rule.value].id

        route_action {
          url_rewrite {
            # The matched prefix (/<name> or /<name>/) becomes "/".
            path_prefix_rewrite = "/"
          }
        }
      }
    }
  }
}

resource "google_compute_managed_ssl_certificate" "web" {
  name = "leadvoice-web"

  managed {
    domains = [var.domain]
  }
}

resource "google_compute_ssl_policy" "web" {
  name            = "leadvoice-web"
  profile         = "RESTRICTED"
  min_tls_version = "TLS_1_2"
}

resource "google_compute_target_https_proxy" "web" {
  name             = "leadvoice-web"
  url_map          = google_compute_url_map.web.id
  ssl_certificates = [google_compute_managed_ssl_certificate.web.id]
  ssl_policy       = google_compute_ssl_policy.web.id
}

resource "google_compute_global_forwarding_rule" "https" {
  name                  = "leadvoice-web-https"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  ip_address            = google_compute_global_address.web.id
  port_range            = "443"
  target                = google_compute_target_https_proxy.web.id
}

# Plain HTTP only redirects to HTTPS.
resource "google_compute_url_map" "redirect" {
  name = "leadvoice-web-redirect"

  default_url_redirect {
    https_redirect         = true
    redirect_response_code = "MOVED_PERMANENTLY_DEFAULT"
    strip_query            = false
  }
}

resource "google_compute_target_http_proxy" "redirect" {
  name    = "leadvoice-web-redirect"
  url_map = google_compute_url_map.redirect.id
}

resource "google_compute_global_forwarding_rule" "http" {
  name                  = "leadvoice-web-http"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  ip_address            = google_compute_global_address.web.id
  port_range            = "80"
  target                = google_compute_target_http_proxy.redirect.id
}
