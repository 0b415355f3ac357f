# The ION Mentoring dashboard: traffic, errors, latency, Gemini, backups, and the SLOs.

resource "google_monitoring_dashboard" "ion" {
  dashboard_json = jsonencode({
    displayName = "ION Mentoring"
    mosaicLayout = {
      columns = 12
      tiles = [
        for index, widget in [
          {
            title = "Requests per function (per second)"
            xyChart = { dataSets = [{
              plotType = "LINE"
              timeSeriesQuery = { timeSeriesFilter = {
                filter      = "metric.type=\"run.googleapis.com/request_count\" AND resource.type=\"cloud_run_revision\""
                aggregation = { alignmentPeriod = "60s", perSeriesAligner = "ALIGN_RATE", crossSeriesReducer = "REDUCE_SUM", groupByFields = ["resource.label.service_name"] }
              } }
            }] }
          },
          {
            title = "5xx responses per function (per second)"
            xyChart = { dataSets = [{
              plotType = "LINE"
              timeSeriesQuery = { timeSeriesFilter = {
                filter      = "metric.type=\"run.googleapis.com/request_count\" AND resource.type=\"cloud_run_revision\" AND metric.labels.response_code_class=\"5xx\""
                aggregation = { alignmentPeriod = "60s", perSeriesAligner = "ALIGN_RATE", crossSeriesReducer = "REDUCE_SUM", groupByFields = ["resource.label.service_name"] }
              } }
            }] }
          },
          {
            title = "p95 latency per function (ms)"
            xyChart = { dataSets = [{
              plotType = "LINE"
              timeSeriesQuery = { timeSeriesFilter = {
                filter      = "metric.type=\"run.googleapis.com/request_latencies\" AND resource.type=\"cloud_run_revision\""
                aggregation = { alignmentPeriod = "60s", perSeriesAligner = "ALIGN_DELTA", crossSeriesReducer = "REDUCE_PERCENTILE_95", groupByFields = ["resource.label.service_name"] }
              } }
            }] }
          },
          {
            title = "Gemini failures"
            xyChart = { dataSets = [{
              plotType = "STACKED_BAR"
              timeSeriesQuery = { timeSeriesFilter = {
                filter      = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.counter["llm_failures"].name}\" AND resource.type=\"cloud_run_revision\""
                aggregation = { alignmentPeriod = "300s", perSeriesAligner = "ALIGN_DELTA", crossSeriesReducer = "REDUCE_SUM" }
              } }
            }] }
          },
          {
            title = "Rate-limited requests (429)"
            xyChart = { dataSets = [{
              plotType = "STACKED_BAR"
              timeSeriesQuery = { timeSeriesFilter = {
                filter      = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.rate_limited.name}\" AND resource.type=\"cloud_run_revision\""
                aggregation = { alignmentPeriod = "300s", perSeriesAligner = "ALIGN_DELTA", crossSeriesReducer = "REDUCE_SUM", groupByFields = ["metric.label.service"] }
              } }
            }] }
          },
          {
            title = "Backup failures and dead letters"
            xyChart = { dataSets = [
              {
                plotType = "STACKED_BAR"
                timeSeriesQuery = { timeSeriesFilter = {
                  filter      = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.counter["backup_failures"].name}\""
                  aggregation = { alignmentPeriod = "3600s", perSeriesAligner = "ALIGN_DELTA", crossSeriesReducer = "REDUCE_SUM" }
                } }
              },
              {
                plotType = "LINE"
                timeSeriesQuery = { timeSeriesFilter = {
                  filter      = "metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\" AND resource.type=\"pubsub_subscription\""
                  aggregation = { alignmentPeriod = "300s", perSeriesAligner = "ALIGN_MAX", crossSeriesReducer = "REDUCE_MAX", groupByFields = ["resource.label.subscription_id"] }
                } }
              },
            ] }
          },
          {
            title = "Instances per function"
            xyChart = { dataSets = [{
              plotType = "LINE"
              timeSeriesQuery = { timeSeriesFilter = {
                filter      = "metric.type=\"run.googleapis.com/container/instance_count\" AND resource.type=\"cloud_run_revision\""
                aggregation = { alignmentPeriod = "60s", perSeriesAligner = "ALIGN_MAX", crossSeriesReducer = "REDUCE_SUM", groupByFields = ["resource.label.service_name"] }
              } }
            }] }
          },
          {
            title = "Chat SLOs: compliance over 28 days (goal: see each SLO's name)"
            xyChart = { dataSets = [
              for slo in concat(values(google_monitoring_slo.chat_ratio), [google_monitoring_slo.chat_latency]) : {
                plotType           = "LINE"
                legendTemplate     = slo.slo_id
                timeSeriesQuery    = { timeSeriesFilter = { filter = "select_slo_compliance(\"${slo.name}\")" } }
                minAlignmentPeriod = "3600s"
              }
            ] }
          },
          {
            title = "Chat SLOs: error budget left (fraction of 28 days)"
            xyChart = { dataSets = [
              for slo in concat(values(google_monitoring_slo.chat_ratio), [google_monitoring_slo.chat_latency]) : {
                plotType           = "LINE"
                legendTemplate     = slo.slo_id
                timeSeriesQuery    = { timeSeriesFilter = { filter = "select_slo_budget_fraction(\"${slo.name}\")" } }
                minAlignmentPeriod = "3600s"
              }
            ] }
          },
          {
            title = "Chat availability: burn rate over 1 h (page above 14.4)"
            xyChart = { dataSets = [{
              plotType        = "LINE"
              timeSeriesQuery = { timeSeriesFilter = { filter = "select_slo_burn_rate(\"${google_monitoring_slo.chat_ratio["availability"].name}\", \"3600s\")" } }
            }] }
          },
          {
            title = "Cloud Armor: requests by outcome, enforced and previewed"
            xyChart = { dataSets = [
              for metric in ["request_count", "previewed_request_count"] : {
                plotType       = "STACKED_BAR"
                legendTemplate = "${metric} blocked=$${metric.labels.blocked}"
                timeSeriesQuery = { timeSeriesFilter = {
                  filter      = "metric.type=\"networksecurity.googleapis.com/https/${metric}\" AND resource.type=\"network_security_policy\""
                  aggregation = { alignmentPeriod = "300s", perSeriesAligner = "ALIGN_DELTA", crossSeriesReducer = "REDUCE_SUM", groupByFields = ["metric.label.blocked"] }
                } }
              }
            ] }
          },
          ] : {
          xPos   = (index % 2) * 6
          yPos   = floor(index / 2) * 4
          width  = 6
          height = 4
          widget = widget
        }
      ]
    }
  })
}
