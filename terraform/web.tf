# The learner web chat and the operator page (web/): static files in a Cloud Storage bucket,
# served by the edge load balancer (edge.tf) on var.web_domain through a backend bucket with
# Cloud CDN and the page's security headers. The page calls the APIs on edge_domains[0],
# which allow its origin (ION_CORS_ORIGINS, functions.tf). config.json tells the page where
# the API is and how learners sign in (docs/deploy.md, "Web app").

locals {
  web_dir    = "${path.module}/../web"
  web_origin = "https://${var.web_domain}"
  api_origin = "https://${var.edge_domains[0]}"

  # Every file of web/ is published; these are the types it holds.
  web_content_types = {
    html = "text/html; charset=utf-8"
    js   = "text/javascript; charset=utf-8"
    css  = "text/css; charset=utf-8"
    svg  = "image/svg+xml"
  }
  web_files = {
    for file in fileset(local.web_dir, "*.{html,js,css,svg}") : file => local.web_content_types[reverse(split(".", file))[0]]
  }

  # Scripts and styles from the site itself only: no inline script, no CDN. The page talks
  # to the API and, for Firebase Auth sign-in, to Google's identity endpoints.
  web_csp = join(" ", [
    "default-src 'none';",
    "script-src 'self';",
    "style-src 'self';",
    "img-src 'self' data:;",
    "connect-src 'self' ${local.api_origin} https://identitytoolkit.googleapis.com https://securetoken.googleapis.com;",
    "manifest-src 'self';",
    "base-uri 'none';",
    "form-action 'none';",
    "frame-ancestors 'none'",
  ])

  # What the page reads at start (web/api.js): the API and the sign-in method.
  web_config = {
    api_base  = local.api_origin
    page_size = 20
    auth      = var.web_firebase_api_key == null ? { mode = "none" } : { mode = "firebase", api_key = var.web_firebase_api_key }
  }
}

resource "google_storage_bucket" "web" {
  #checkov:skip=CKV_GCP_114:A public website: its objects must be readable by anyone (allUsers objectViewer below), so public access prevention cannot be enforced; nothing else is stored here.
  #checkov:skip=CKV_GCP_62:Storage usage logs would need a second bucket; Data Access audit logs for storage.googleapis.com (iam.tf, data_access) record every write of these objects, which are public copies of the repository's web/ folder.
  name                        = "${var.project_id}-ion-web"
  location                    = var.backup_location
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "inherited"
  force_destroy               = true # only published copies of web/ live here

  versioning {
    enabled = true
  }

  # Replaced files go one day after a newer version is published.
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 1
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  website {
    main_page_suffix = "index.html"
    not_found_page   = "index.html"
  }
}

# Anyone may read the site's files: the load balancer fetches them as an anonymous reader.
resource "google_storage_bucket_iam_member" "web_public" {
  #checkov:skip=CKV_GCP_28:The bucket is the public website (static HTML, JS and CSS, and config.json with the public API origin); it holds no learner data.
  bucket = google_storage_bucket.web.name
  role   = "roles/storage.objectViewer"
  member = "allUsers"
}

resource "google_storage_bucket_object" "web" {
  for_each = local.web_files

  bucket        = google_storage_bucket.web.name
  name          = each.key
  source        = "${local.web_dir}/${each.key}"
  content_type  = each.value
  cache_control = "no-cache" # revalidated on every load: a deploy shows at once
}

# The operator page's pretty path (/operator) as the file ion serve also answers it with.
resource "google_storage_bucket_object" "web_operator_alias" {
  bucket        = google_storage_bucket.web.name
  name          = "operator"
  source        = "${local.web_dir}/operator.html"
  content_type  = local.web_content_types.html
  cache_control = "no-cache"
}

resource "google_storage_bucket_object" "web_config" {
  bucket        = google_storage_bucket.web.name
  name          = "config.json"
  content       = jsonencode(local.web_config)
  content_type  = "application/json"
  cache_control = "no-cache"
}

resource "google_compute_backend_bucket" "web" {
  name        = "ion-web"
  description = "The learner web chat and the operator page (web/)."
  bucket_name = google_storage_bucket.web.name
  enable_cdn  = true

  # The same headers `ion serve` sends with the pages (shared/ion/entrypoints/http/web.py).
  custom_response_headers = [
    "Content-Security-Policy: ${local.web_csp}",
    "Strict-Transport-Security: max-age=63072000; includeSubDomains",
    "X-Content-Type-Options: nosniff",
    "X-Frame-Options: DENY",
    "Referrer-Policy: no-referrer",
  ]

  cdn_policy {
    cache_mode  = "USE_ORIGIN_HEADERS"
    default_ttl = 0
  }

  lifecycle {
    precondition {
      condition     = !contains(var.edge_domains, var.web_domain)
      error_message = "web_domain must be a domain of its own, not one of edge_domains (those route to the APIs)."
    }
  }
}
