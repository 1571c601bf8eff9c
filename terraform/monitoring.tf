# Alerts, and the log-based metrics they read.
#
# The functions log one JSON object per line (shared/logs.py); Cloud Logging puts it in jsonPayload.
# These metrics match on jsonPayload.message, so the code must log exactly these messages:
#   "circuit opened"      fields: service (the outside system, e.g. hubspot, gmail, vertex)
#   "kill switch changed" fields: kill_switch (true|false)
#   "send failed"         fields: workflow_id, reason
#   "draft created"       fields: workflow_id, lead_to_draft_seconds (from the lead's arrival)

locals {
  on_cloud_run = "resource.type=\"cloud_run_revision\""
}

resource "google_monitoring_notification_channel" "email" {
  display_name = "LeadVoice alerts"
  type         = "email"
  labels = {
    email_address = var.alert_email
  }
}

resource "google_logging_metric" "circuit_opened" {
  name   = "leadvoice/circuit_opened"
  filter = "${local.on_cloud_run} AND jsonPayload.message=\"circuit opened\""

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    labels {
      key         = "service"
      value_type  = "STRING"
      description = "Outside system whose breaker opened."
    }
  }
  label_extractors = {
    service = "EXTRACT(jsonPayload.service)"
  }
}

resource "google_logging_metric" "kill_switch_on" {
  name   = "leadvoice/kill_switch_on"
  filter = "${local.on_cloud_run} AND jsonPayload.message=\"kill switch changed\" AND jsonPayload.kill_switch=true"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
  }
}

resource "google_logging_metric" "send_failed" {
  name   = "leadvoice/send_failed"
  filter = "${local.on_cloud_run} AND resource.labels.service_name=\"send\" AND jsonPayload.message=\"send failed\""

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
  }
}

resource "google_logging_metric" "lead_to_draft" {
  name            = "leadvoice/lead_to_draft_seconds"
  filter          = "${local.on_cloud_run} AND jsonPayload.message=\"draft created\""
  value_extractor = "EXTRACT(jsonPayload.lead_to_draft_seconds)"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "DISTRIBUTION"
    unit        = "s"
  }

  bucket_options {
    exponential_buckets {
      num_finite_buckets = 20
      growth_factor      = 2
      scale              = 1
    }
  }
}

# More than 5% of a function's requests answered 5xx for 5 minutes. A 500 is a bug (DESIGN §4); 503s
# are dependencies down, which the breaker alert names.
resource "google_monitoring_alert_policy" "function_errors" {
  display_name = "LeadVoice: function error rate above 5%"
  combiner     = "OR"

  conditions {
    display_name = "5xx ratio per function"
    condition_threshold {
      filter             = "resource.type=\"cloud_run_revision\" AND metric.type=\"run.googleapis.com/request_count\" AND metric.labels.response_code_class=\"5xx\""
      denominator_filter = "resource.type=\"cloud_run_revision\" AND metric.type=\"run.googleapis.com/request_count\""
      comparison         = "COMPARISON_GT"
      threshold_value    = 0.05
      duration           = "300s"

      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_RATE"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["resource.labels.service_name"]
      }
      denominator_aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_RATE"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["resource.labels.service_name"]
      }
    }
  }

  notification_channels = [google_monitoring_notification_channel.email.id]
  documentation {
    content = "A function answers 5xx. Logs: resource.labels.service_name in Cloud Logging. See docs/runbooks/stuck-workflow.md."
  }
}

# Anything in a dead-letter subscription is a message that failed ten deliveries.
resource "google_monitoring_alert_policy" "dead_letters" {
  display_name = "LeadVoice: messages in a dead-letter queue"
  combiner     = "OR"

  conditions {
    display_name = "undelivered dead letters"
    condition_threshold {
      filter          = "resource.type=\"pubsub_subscription\" AND metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\" AND resource.labels.subscription_id=ends_with(\"--dead-letter\")"
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "300s"

      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }

  notification_channels = [google_monitoring_notification_channel.email.id]
  documentation {
    content = "See docs/runbooks/replay-dead-letters.md."
  }
}

resource "google_monitoring_alert_policy" "send_failures" {
  display_name = "LeadVoice: sends failing"
  combiner     = "OR"

  conditions {
    display_name = "send failed, 3 or more in 15 minutes"
    condition_threshold {
      filter          = "resource.type=\"cloud_run_revision\" AND metric.type=\"logging.googleapis.com/user/${google_logging_metric.send_failed.name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 2
      duration        = "0s"

      aggregations {
        alignment_period     = "900s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  notification_channels = [google_monitoring_notification_channel.email.id]
  documentation {
    content = "Gmail sends fail. Check revoked tokens (docs/runbooks/revoked-tokens.md) and quotas (docs/runbooks/quota-exhausted.md)."
  }
}

resource "google_monitoring_alert_policy" "circuit_opened" {
  display_name = "LeadVoice: circuit breaker opened"
  combiner     = "OR"

  conditions {
    display_name = "circuit opened"
    condition_threshold {
      filter          = "resource.type=\"cloud_run_revision\" AND metric.type=\"logging.googleapis.com/user/${google_logging_metric.circuit_opened.name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["metric.labels.service"]
      }
    }
  }

  notification_channels = [google_monitoring_notification_channel.email.id]
  documentation {
    content = "An outside system (metric label `service`) keeps failing; drafts and sends that need it wait. See docs/runbooks/stuck-workflow.md."
  }
}

resource "google_monitoring_alert_policy" "kill_switch" {
  display_name = "LeadVoice: kill switch turned on"
  combiner     = "OR"

  conditions {
    display_name = "kill switch changed to on"
    condition_threshold {
      filter          = "resource.type=\"cloud_run_revision\" AND metric.type=\"logging.googleapis.com/user/${google_logging_metric.kill_switch_on.name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  notification_channels = [google_monitoring_notification_channel.email.id]
  documentation {
    content = "Nothing is being sent. Who turned it on is in Firestore flag_audit. See docs/runbooks/kill-switch.md."
  }
}

# SLO watchers (docs/slo.md).
resource "google_monitoring_alert_policy" "webhook_latency" {
  display_name = "LeadVoice SLO: webhook p95 answer time above 1 s"
  combiner     = "OR"

  conditions {
    display_name = "webhook p95 latency"
    condition_threshold {
      filter          = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"webhook\" AND metric.type=\"run.googleapis.com/request_latencies\""
      comparison      = "COMPARISON_GT"
      threshold_value = 1000 # milliseconds
      duration        = "600s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_PERCENTILE_95"
      }
    }
  }

  notification_channels = [google_monitoring_notification_channel.email.id]
  documentation {
    content = "HubSpot retries webhooks it does not see answered in 5 s. See docs/slo.md."
  }
}

resource "google_monitoring_alert_policy" "lead_to_draft" {
  display_name = "LeadVoice SLO: lead-to-draft p95 above 10 minutes"
  combiner     = "OR"

  conditions {
    display_name = "lead-to-draft p95"
    condition_threshold {
      filter          = "resource.type=\"cloud_run_revision\" AND metric.type=\"logging.googleapis.com/user/${google_logging_metric.lead_to_draft.name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 600 # seconds
      duration        = "900s"

      aggregations {
        alignment_period     = "900s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_PERCENTILE_95"
      }
    }
  }

  notification_channels = [google_monitoring_notification_channel.email.id]
  documentation {
    content = "Leads wait too long for a draft. See docs/slo.md and docs/runbooks/stuck-workflow.md."
  }
}
