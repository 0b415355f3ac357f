# The edge: one global external Application Load Balancer in front of the public APIs in
# every region of var.http_regions, with a Google-managed certificate, an HTTP -> HTTPS
# redirect and a Cloud Armor policy; its backends are in edge_backends.tf. The functions
# accept nothing else (ingress ALLOW_INTERNAL_AND_GCLB, functions.tf), so no request
# reaches them around the policy.
# docs/operations.md ("Edge") describes each rule and how to move one out of preview.

locals {
  # The load balancer's uptime-check paths (monitoring.tf): /_health/<entry point> is
  # rewritten to that function's /health, so each API is checked through the whole edge.
  health_paths = { for key in keys(local.http_functions) : key => "/_health/${key}" }

  # Which API serves which paths (openapi.yaml); anything else goes to chat, which answers
  # 404 in the API's JSON envelope.
  api_paths = {
    chat          = ["/v1/chat", "/v1/chat/*", "/v1/conversations", "/v1/conversations/*", "/v1/me", "/v1/me/*"]
    persona_route = ["/v1/route", "/v1/personas", "/v1/routing/*", "/v1/operator/*"]
  }

  # Every Cloud Armor rule but the default, by name. `learner_risk` = it could refuse a real
  # learner (a developer quoting SQL or a shell command, a classroom behind one NAT address,
  # a learner abroad): such a rule runs in preview until its name is in
  # var.armor_enforced_rules. `enabled` = it exists at all (optional rules). Expressions are
  # Cloud Armor's rules language; the WAF rules are the OWASP ModSecurity CRS 3.3 sets
  # preconfigured in Cloud Armor, at var.armor_waf_sensitivity.
  armor_rules = {
    trusted = {
      priority     = 1000
      description  = "Trusted ranges skip every rule below"
      action       = "allow"
      expression   = ""
      ip_ranges    = var.armor_trusted_ip_ranges
      learner_risk = false
      rate_ban     = false
      enabled      = length(var.armor_trusted_ip_ranges) > 0
    }
    # Candidate revisions (edge_backends.tf) answer the smoke test's calls and nothing else.
    candidate = {
      priority     = 1050
      description  = "Candidate routes answer only the deploy's smoke-test GETs"
      action       = "deny(404)"
      expression   = "request.path.startsWith('/_candidate/') && !(request.method == 'GET' && request.path.matches('^/_candidate/[a-z0-9-]+/[a-z_]+/(health|ready|v1/conversations|v1/personas)$'))"
      ip_ranges    = []
      learner_risk = false
      rate_ban     = false
      enabled      = true
    }
    # Content-Length of armor_max_body_digits + 1 digits or more. The app refuses bodies over
    # ION_MAX_BODY_BYTES (64 KiB) itself; the edge stops far larger ones before they cost a
    # function instance.
    body_size = {
      priority     = 1100
      description  = "Refuse bodies of ${pow(10, var.armor_max_body_digits)} bytes or more"
      action       = "deny(413)"
      expression   = "request.headers['content-length'].matches('^[0-9]{${var.armor_max_body_digits + 1},}$')"
      ip_ranges    = []
      learner_risk = false
      rate_ban     = false
      enabled      = true
    }
    geo = {
      priority     = 1200
      description  = "Refuse callers outside armor_allowed_regions"
      action       = "deny(403)"
      expression   = join(" && ", [for code in var.armor_allowed_regions : "origin.region_code != '${code}'"])
      ip_ranges    = []
      learner_risk = true
      rate_ban     = false
      enabled      = length(var.armor_allowed_regions) > 0
    }
    # Every caller counts: the edge cannot tell a signed-in learner from a flood (tokens are
    # checked by the app), so the limit is per IP address and generous.
    rate_ban = {
      priority     = 2000
      description  = "Per-IP flood: 429 over the limit, then a ban"
      action       = "rate_based_ban"
      expression   = ""
      ip_ranges    = ["*"]
      learner_risk = true
      rate_ban     = true
      enabled      = true
    }
    sqli = {
      priority     = 3000
      description  = "OWASP CRS SQL injection, sensitivity ${var.armor_waf_sensitivity}"
      action       = "deny(403)"
      expression   = "evaluatePreconfiguredWaf('sqli-v33-stable', {'sensitivity': ${var.armor_waf_sensitivity}})"
      ip_ranges    = []
      learner_risk = true
      rate_ban     = false
      enabled      = true
    }
    xss = {
      priority     = 3010
      description  = "OWASP CRS cross-site scripting, sensitivity ${var.armor_waf_sensitivity}"
      action       = "deny(403)"
      expression   = "evaluatePreconfiguredWaf('xss-v33-stable', {'sensitivity': ${var.armor_waf_sensitivity}})"
      ip_ranges    = []
      learner_risk = true
      rate_ban     = false
      enabled      = true
    }
    lfi = {
      priority     = 3020
      description  = "OWASP CRS local file inclusion, sensitivity ${var.armor_waf_sensitivity}"
      action       = "deny(403)"
      expression   = "evaluatePreconfiguredWaf('lfi-v33-stable', {'sensitivity': ${var.armor_waf_sensitivity}})"
      ip_ranges    = []
      learner_risk = true
      rate_ban     = false
      enabled      = true
    }
    rfi = {
      priority     = 3030
      description  = "OWASP CRS remote file inclusion, sensitivity ${var.armor_waf_sensitivity}"
      action       = "deny(403)"
      expression   = "evaluatePreconfiguredWaf('rfi-v33-stable', {'sensitivity': ${var.armor_waf_sensitivity}})"
      ip_ranges    = []
      learner_risk = true
      rate_ban     = false
      enabled      = true
    }
    rce = {
      priority     = 3040
      description  = "OWASP CRS remote code execution, sensitivity ${var.armor_waf_sensitivity}"
      action       = "deny(403)"
      expression   = "evaluatePreconfiguredWaf('rce-v33-stable', {'sensitivity': ${var.armor_waf_sensitivity}})"
      ip_ranges    = []
      learner_risk = true
      rate_ban     = false
      enabled      = true
    }
    scannerdetection = {
      priority     = 3050
      description  = "OWASP CRS scanner detection, sensitivity ${var.armor_waf_sensitivity}"
      action       = "deny(403)"
      expression   = "evaluatePreconfiguredWaf('scannerdetection-v33-stable', {'sensitivity': ${var.armor_waf_sensitivity}})"
      ip_ranges    = []
      learner_risk = true
      rate_ban     = false
      enabled      = true
    }
    protocolattack = {
      priority     = 3060
      description  = "OWASP CRS protocol attack, sensitivity ${var.armor_waf_sensitivity}"
      action       = "deny(403)"
      expression   = "evaluatePreconfiguredWaf('protocolattack-v33-stable', {'sensitivity': ${var.armor_waf_sensitivity}})"
      ip_ranges    = []
      learner_risk = true
      rate_ban     = false
      enabled      = true
    }
    sessionfixation = {
      priority     = 3070
      description  = "OWASP CRS session fixation, sensitivity ${var.armor_waf_sensitivity}"
      action       = "deny(403)"
      expression   = "evaluatePreconfiguredWaf('sessionfixation-v33-stable', {'sensitivity': ${var.armor_waf_sensitivity}})"
      ip_ranges    = []
      learner_risk = true
      rate_ban     = false
      enabled      = true
    }
  }
}

resource "google_compute_security_policy" "edge" {
  #checkov:skip=CKV_GCP_73:No Java runs behind this policy (Python functions only), so Log4j lookups cannot harm it; the cve-canary rule would only refuse learners quoting Log4Shell strings while asking about the CVE.
  name        = "ion-edge"
  description = "ION public APIs: OWASP CRS, per-IP rate ban, body size, optional geo and trusted ranges (docs/operations.md)."
  type        = "CLOUD_ARMOR"

  # Adaptive Protection learns the usual traffic of each backend and alerts on (and
  # suggests rules against) layer 7 DDoS attacks.
  adaptive_protection_config {
    layer_7_ddos_defense_config {
      enable          = true
      rule_visibility = "STANDARD"
    }
  }

  advanced_options_config {
    # The WAF parses JSON bodies as JSON instead of raw text: fewer false positives on
    # learners' messages, which arrive as JSON.
    json_parsing = "STANDARD"
    # Logs which signature matched, needed to tune a preview rule before enforcing it.
    log_level = "VERBOSE"
  }

  dynamic "rule" {
    for_each = { for name, rule in local.armor_rules : name => rule if rule.enabled }
    content {
      priority    = rule.value.priority
      description = rule.value.description
      action      = rule.value.action
      preview     = rule.value.learner_risk && !contains(var.armor_enforced_rules, rule.key)

      match {
        versioned_expr = rule.value.expression == "" ? "SRC_IPS_V1" : null

        dynamic "config" {
          for_each = rule.value.expression == "" ? [rule.value.ip_ranges] : []
          content {
            src_ip_ranges = config.value
          }
        }

        dynamic "expr" {
          for_each = rule.value.expression == "" ? [] : [rule.value.expression]
          content {
            expression = expr.value
          }
        }
      }

      dynamic "rate_limit_options" {
        for_each = rule.value.rate_ban ? [1] : []
        content {
          conform_action   = "allow"
          exceed_action    = "deny(429)"
          enforce_on_key   = "IP"
          ban_duration_sec = var.armor_ban_seconds
          rate_limit_threshold {
            count        = var.armor_rate_limit_per_minute
            interval_sec = 60
          }
          # Still over 5x the limit across ten minutes: banned for ban_duration_sec.
          ban_threshold {
            count        = var.armor_rate_limit_per_minute * 5 * 10
            interval_sec = 600
          }
        }
      }
    }
  }

  rule {
    priority    = 2147483647
    description = "Default: allow what no rule above refused"
    action      = "allow"
    match {
      versioned_expr = "SRC_IPS_V1"
      config {
        src_ip_ranges = ["*"]
      }
    }
  }
}

resource "google_compute_url_map" "edge" {
  name            = "ion-edge"
  description     = "Routes the public API paths to chat or persona_route, and the web app's domain to its bucket."
  default_service = google_compute_backend_service.http["chat"].id

  host_rule {
    hosts        = var.edge_domains
    path_matcher = "api"
  }

  # The web app (web.tf) on its own domain: every path is a file of the bucket.
  host_rule {
    hosts        = [var.web_domain]
    path_matcher = "web"
  }

  path_matcher {
    name            = "api"
    default_service = google_compute_backend_service.http["chat"].id

    dynamic "path_rule" {
      for_each = local.api_paths
      content {
        paths   = path_rule.value
        service = google_compute_backend_service.http[path_rule.key].id
      }
    }

    dynamic "path_rule" {
      for_each = local.candidate_paths # edge_backends.tf
      content {
        paths   = ["${path_rule.value}/*"]
        service = google_compute_backend_service.candidate[path_rule.key].id
        route_action {
          url_rewrite {
            path_prefix_rewrite = "/"
          }
        }
      }
    }

    dynamic "path_rule" {
      for_each = local.health_paths
      content {
        paths   = [path_rule.value]
        service = google_compute_backend_service.http[path_rule.key].id
        route_action {
          url_rewrite {
            path_prefix_rewrite = "/health"
          }
        }
      }
    }
  }

  path_matcher {
    name            = "web"
    default_service = google_compute_backend_bucket.web.id
  }
}

# Plain HTTP only redirects to HTTPS.
resource "google_compute_url_map" "redirect" {
  name        = "ion-edge-redirect"
  description = "HTTP -> HTTPS (301)."

  default_url_redirect {
    https_redirect         = true
    redirect_response_code = "MOVED_PERMANENTLY_DEFAULT"
    strip_query            = false
  }
}

resource "google_compute_global_address" "edge" {
  name = "ion-edge"
}

# Provisioned once the domains' DNS A records (the APIs' and the web app's) point at the
# edge address (docs/deploy.md).
resource "google_compute_managed_ssl_certificate" "edge" {
  name = "ion-edge"

  managed {
    domains = concat(var.edge_domains, [var.web_domain])
  }
}

# TLS 1.2 or newer with the MODERN cipher profile.
resource "google_compute_ssl_policy" "edge" {
  name            = "ion-edge"
  profile         = "MODERN"
  min_tls_version = "TLS_1_2"
}

resource "google_compute_target_https_proxy" "edge" {
  name             = "ion-edge"
  url_map          = google_compute_url_map.edge.id
  ssl_certificates = [google_compute_managed_ssl_certificate.edge.id]
  ssl_policy       = google_compute_ssl_policy.edge.id
}

resource "google_compute_target_http_proxy" "redirect" {
  name    = "ion-edge-redirect"
  url_map = google_compute_url_map.redirect.id
}

resource "google_compute_global_forwarding_rule" "https" {
  name                  = "ion-edge-https"
  target                = google_compute_target_https_proxy.edge.id
  ip_address            = google_compute_global_address.edge.id
  port_range            = "443"
  ip_protocol           = "TCP"
  load_balancing_scheme = "EXTERNAL_MANAGED"
}

resource "google_compute_global_forwarding_rule" "http" {
  name                  = "ion-edge-http"
  target                = google_compute_target_http_proxy.redirect.id
  ip_address            = google_compute_global_address.edge.id
  port_range            = "80"
  ip_protocol           = "TCP"
  load_balancing_scheme = "EXTERNAL_MANAGED"
}
