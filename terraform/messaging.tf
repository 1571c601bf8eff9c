# Pub/Sub topics and push subscriptions (shared/topology.SUBSCRIPTIONS), Cloud Tasks queues
# (shared/topology.queue_name) and the Cloud Scheduler job.

locals {
  topics = ["draft-created", "voice-updated", "workflow-finished", "gmail-push"]

  # "<topic>--<function>" (shared/adapters/pubsub.subscription_id) -> where it pushes.
  push_subscriptions = {
    "draft-created--gate"  = { topic = "draft-created", function = "gate", path = "" }
    "gmail-push--webhook" = { topic = "gmail-push", function = "webhook", path = "/gmail" }
  }

  pubsub_service_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"

  # Function -> topics it publishes to.
  publishers = {
    embed = ["voice-updated"]
    draft = ["draft-created"]
    gate  = ["workflow-finished"] # a BLOCKED draft ends its workflow at the gate
    send  = ["workflow-finished"]
  }

  # Function -> task targets it enqueues to.
  enqueuers = {
    webhook = ["draft"]
    ingest  = ["extract", "embed"] # uploads and links; POST /ingest/retrain re-embeds
    extract = ["embed"]
    gate    = ["send"] # scheduled in the recipient's business hours
  }
}

# --- Pub/Sub -------------------------------------------------------------------------------------

resource "google_pubsub_topic" "main" {
  for_each = toset(local.topics)

  name   = each.value
  labels = local.labels
  # Messages are ids and small events; a day covers a subscriber outage and a seek back.
  message_retention_duration = "86400s"
  depends_on                 = [google_project_service.enabled]
}

# Gmail publishes a rep's mailbox changes to gmail-push as this Google account
# (https://developers.google.com/gmail/api/guides/push#grant_publish_rights_on_your_topic).
resource "google_pubsub_topic_iam_member" "gmail_push" {
  topic  = google_pubsub_topic.main["gmail-push"].name
  role   = "roles/pubsub.publisher"
  member = "serviceAccount:gmail-api-push@system.gserviceaccount.com"
}

resource "google_pubsub_topic_iam_member" "publisher" {
  for_each = {
    for pair in flatten([for fn, topics in local.publishers : [for t in topics : { fn = fn, topic = t }]]) :
    "${pair.fn} ${pair.topic}" => pair
  }

  topic  = google_pubsub_topic.main[each.value.topic].name
  role   = "roles/pubsub.publisher"
  member = google_service_account.function[each.value.fn].member
}

# Each push subscription has its own dead-letter topic, and a pull subscription on it so dead letters
# are kept for inspection and replay (docs/runbooks/replay-dead-letters.md): a topic without a
# subscription drops what is published to it.
resource "google_pubsub_topic" "dead_letter" {
  for_each = local.push_subscriptions

  name                       = "${each.key}--dead-letter"
  labels                     = local.labels
  message_retention_duration = "604800s"
}

resource "google_pubsub_subscription" "dead_letter" {
  for_each = local.push_subscriptions

  name                       = "${each.key}--dead-letter"
  topic                      = google_pubsub_topic.dead_letter[each.key].id
  labels                     = local.labels
  message_retention_duration = "604800s" # the longest Pub/Sub keeps unacknowledged messages
  retain_acked_messages      = true      # a replay can seek back over what was already looked at
  ack_deadline_seconds       = 60

  expiration_policy {
    ttl = "" # never expires for inactivity
  }
}

resource "google_pubsub_subscription" "push" {
  for_each = local.push_subscriptions

  name                 = each.key
  topic                = google_pubsub_topic.main[each.value.topic].id
  labels               = local.labels
  ack_deadline_seconds = 60

  push_config {
    push_endpoint = "${local.function_url[each.value.function]}${each.value.path}"

    oidc_token {
      service_account_email = google_service_account.caller["pubsub"].email
      # The function checks this audience: its own URL (Settings.audience_for).
      audience = local.function_url[each.value.function]
    }
  }

  # Pub/Sub's own defaults, as in the emulator setup (shared/adapters/pubsub.py).
  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter[each.key].id
    max_delivery_attempts = 10
  }

  expiration_policy {
    ttl = ""
  }

  depends_on = [
    google_pubsub_topic_iam_member.dead_letter_publisher,
  ]
}

# Dead-lettering is done by the Pub/Sub service agent: it must publish to the dead-letter topic and
# acknowledge on the source subscription (https://cloud.google.com/pubsub/docs/handling-failures).
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  for_each = local.push_subscriptions

  topic  = google_pubsub_topic.dead_letter[each.key].name
  role   = "roles/pubsub.publisher"
  member = local.pubsub_service_agent
}

resource "google_pubsub_subscription_iam_member" "dead_letter_subscriber" {
  for_each = local.push_subscriptions

  subscription = google_pubsub_subscription.push[each.key].name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}

# The service agent mints the push subscriptions' OIDC tokens as pubsub-push.
resource "google_service_account_iam_member" "pubsub_agent_token_creator" {
  service_account_id = google_service_account.caller["pubsub"].name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_service_agent
}

# --- Cloud Tasks ---------------------------------------------------------------------------------

locals {
  queues = {
    draft = {
      # Each dispatch is one Gemini call and a few HubSpot reads; stay well under both quotas.
      dispatches_per_second = 5
      concurrent            = 20
      max_attempts          = 10
      min_backoff           = "10s"
      max_backoff           = "600s"
    }
    extract = {
      dispatches_per_second = 5
      concurrent            = 10
      max_attempts          = 5 # a file that fails five times is hostile or broken; it ends as failed
      min_backoff           = "10s"
      max_backoff           = "300s"
    }
    embed = {
      dispatches_per_second = 5
      concurrent            = 10 # Vertex AI embedding requests per minute are the limit here
      max_attempts          = 10
      min_backoff           = "10s"
      max_backoff           = "600s"
    }
    send = {
      # Gmail: a Google Workspace user may send about 2,000 messages a day
      # (https://support.google.com/a/answer/166852), and bursts trip Gmail's abuse protection sooner
      # than the daily cap. Per-rep daily and weekly quotas are enforced by the gate (shared/quotas.py);
      # this queue keeps the pace low across all reps.
      dispatches_per_second = var.send_dispatches_per_second
      concurrent            = 5
      max_attempts          = 8
      min_backoff           = "30s"
      max_backoff           = "3600s"
    }
  }
}

resource "google_cloud_tasks_queue" "main" {
  for_each = local.queues

  name     = "${each.key}-queue"
  location = var.region

  rate_limits {
    max_dispatches_per_second = each.value.dispatches_per_second
    max_concurrent_dispatches = each.value.concurrent
  }

  retry_config {
    max_attempts       = each.value.max_attempts
    max_retry_duration = "86400s"
    min_backoff        = each.value.min_backoff
    max_backoff        = each.value.max_backoff
    max_doublings      = 5
  }

  # Every attempt's outcome is logged: the dashboards count failed dispatches from these entries.
  stackdriver_logging_config {
    sampling_ratio = 1.0
  }

  depends_on = [google_project_service.enabled]
}

# Enqueue only on the queues of the next hop, not project-wide.
resource "google_cloud_tasks_queue_iam_member" "enqueuer" {
  for_each = {
    for pair in flatten([for fn, targets in local.enqueuers : [for t in targets : { fn = fn, target = t }]]) :
    "${pair.fn} ${pair.target}" => pair
  }

  name     = google_cloud_tasks_queue.main[each.value.target].name
  location = var.region
  role     = "roles/cloudtasks.enqueuer"
  member   = google_service_account.function[each.value.fn].member
}

# A reply cancels the scheduled send of its workflow (DESIGN §1, webhook /gmail).
resource "google_cloud_tasks_queue_iam_member" "webhook_cancels_sends" {
  name     = google_cloud_tasks_queue.main["send"].name
  location = var.region
  role     = "roles/cloudtasks.taskDeleter"
  member   = google_service_account.function["webhook"].member
}

# Creating a task that carries tasks-invoker's OIDC token requires actAs on that account.
resource "google_service_account_iam_member" "enqueuer_acts_as_tasks_invoker" {
  for_each = toset(keys(local.enqueuers))

  service_account_id = google_service_account.caller["tasks"].name
  role               = "roles/iam.serviceAccountUser"
  member             = google_service_account.function[each.key].member
}

# --- Cloud Scheduler -----------------------------------------------------------------------------

# Refreshes access tokens before they expire (an hour) and renews Gmail watches, which lapse after
# seven days (https://developers.google.com/gmail/api/guides/push#renewing_mailbox_watch).
resource "google_cloud_scheduler_job" "token_refresh" {
  name             = "token-refresh"
  region           = var.region
  schedule         = "*/30 * * * *"
  time_zone        = "Etc/UTC"
  attempt_deadline = "540s"

  retry_config {
    retry_count          = 2
    min_backoff_duration = "30s"
  }

  http_target {
    http_method = "POST"
    uri         = local.function_url["token-refresh"]
    body        = base64encode("{}")
    headers = {
      "Content-Type" = "application/json"
    }

    oidc_token {
      service_account_email = google_service_account.caller["scheduler"].email
      audience              = local.function_url["token-refresh"]
    }
  }

  depends_on = [google_project_service.enabled]
}
