# A private network for Cloud SQL: the instance has no public IP, and the functions reach its private
# IP through a Serverless VPC Access connector (Cloud Functions gen2 has no Direct VPC egress).

resource "google_compute_network" "main" {
  name                    = "leadvoice"
  auto_create_subnetworks = false
  depends_on              = [google_project_service.enabled]
}

resource "google_compute_subnetwork" "functions" {
  name                     = "leadvoice-${var.region}"
  region                   = var.region
  network                  = google_compute_network.main.id
  ip_cidr_range            = "10.10.0.0/24"
  private_ip_google_access = true

  log_config {
    aggregation_interval = "INTERVAL_5_SEC"
    flow_sampling        = 0.5
    metadata             = "INCLUDE_ALL_METADATA"
  }
}

# Private service access: the range Google's producer network (Cloud SQL) takes its addresses from.
resource "google_compute_global_address" "private_services" {
  name          = "leadvoice-private-services"
  purpose       = "VPC_PEERING"
  address_type  = "INTERNAL"
  prefix_length = 20
  network       = google_compute_network.main.id
}

resource "google_service_networking_connection" "private_services" {
  network                 = google_compute_network.main.id
  service                 = "servicenetworking.googleapis.com"
  reserved_peering_ranges = [google_compute_global_address.private_services.name]
}

# A connector needs its own unused /28.
resource "google_vpc_access_connector" "functions" {
  name          = "leadvoice-fn"
  region        = var.region
  network       = google_compute_network.main.name
  ip_cidr_range = "10.8.0.0/28"
  machine_type  = "e2-micro"
  min_instances = 2
  max_instances = 3
  depends_on    = [google_project_service.enabled]
}

# Nothing listens in this network (Cloud SQL sits in Google's peered network); refuse all ingress
# explicitly rather than rely on the implied rule, and log what is refused.
resource "google_compute_firewall" "deny_all_ingress" {
  name      = "leadvoice-deny-all-ingress"
  network   = google_compute_network.main.id
  direction = "INGRESS"
  priority  = 65534

  deny {
    protocol = "all"
  }
  source_ranges = ["0.0.0.0/0"]

  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}
