#!/usr/bin/env bash
# Canary rollout of the public HTTP functions (their Cloud Run services), used by
# cloudbuild.yaml and by hand (docs/deploy.md).
#
#   rollout.sh pin          record each service's serving revision as stable, pin 100% to it
#   rollout.sh candidate    set startup CPU boost as Terraform says (a new revision if it
#                           changes), tag the newest revision `candidate`, with no traffic
#   rollout.sh smoke        /health, /ready and an unauthenticated /v1 call on the candidate,
#                           through the load balancer (the functions' only ingress)
#   rollout.sh canary PCT   send PCT% to the candidate, the rest to stable
#   rollout.sh bake SECS    wait SECS, then roll back and fail if the candidate answered 5xx
#   rollout.sh promote      send 100% to the candidate
#   rollout.sh rollback     send 100% back to the recorded stable revision
#
# Environment: REGION (or _REGION), SERVICES (or _CANARY_SERVICES, space-separated),
# ROLLOUT_STATE (directory for the recorded revisions, default /workspace/rollout),
# MAX_5XX (or _CANARY_MAX_5XX, default 0), EDGE_URL (the load balancer's base URL,
# terraform output api_url; default: the content of $EDGE_URL_FILE, /workspace/edge_url),
# SMOKE_ATTEMPTS (default 6) and SMOKE_RETRY_SECONDS (default 10) per smoke call,
# CPU_BOOST_FILE (terraform output -json startup_cpu_boost_services, default
# /workspace/startup_cpu_boost_services.json) or CPU_BOOST_SERVICES (space-separated; set,
# even empty, it replaces the file).
set -euo pipefail

REGION="${REGION:-${_REGION:-us-central1}}"
SERVICES="${SERVICES:-${_CANARY_SERVICES:-ion-chat ion-persona-route}}"
STATE="${ROLLOUT_STATE:-/workspace/rollout}"
MAX_5XX="${MAX_5XX:-${_CANARY_MAX_5XX:-0}}"
SMOKE_ATTEMPTS="${SMOKE_ATTEMPTS:-6}"
SMOKE_RETRY_SECONDS="${SMOKE_RETRY_SECONDS:-10}"
mkdir -p "$STATE"

describe() {
  gcloud run services describe "$1" --region="$REGION" --format=json
}

exists() {
  gcloud run services describe "$1" --region="$REGION" --format='value(metadata.name)' >/dev/null 2>&1
}

# The revision receiving the largest share of traffic.
serving_revision() {
  describe "$1" | python3 -c '
import json, sys
traffic = [t for t in json.load(sys.stdin).get("status", {}).get("traffic", []) if t.get("percent")]
traffic.sort(key=lambda t: -t["percent"])
print(traffic[0].get("revisionName", "") if traffic else "")'
}

latest_revision() {
  gcloud run services describe "$1" --region="$REGION" --format='value(status.latestCreatedRevisionName)'
}

# The services Terraform wants started with CPU boost (output startup_cpu_boost_services).
boost_services() {
  if [[ -n "${CPU_BOOST_SERVICES+set}" ]]; then
    echo "$CPU_BOOST_SERVICES"
    return 0
  fi
  local file="${CPU_BOOST_FILE:-/workspace/startup_cpu_boost_services.json}"
  if [[ ! -r "$file" ]]; then
    echo "no startup CPU boost setting: $file is missing (terraform output -json startup_cpu_boost_services)" >&2
    return 1
  fi
  python3 -c '
import json, sys
names = json.load(open(sys.argv[1]))
if not isinstance(names, list) or not all(isinstance(name, str) and name for name in names):
    sys.exit(f"{sys.argv[1]}: expected a JSON list of service names, got {names!r}")
print(" ".join(names))' "$file"
}

# "true" when the service's template (what its next revision is made from, and what its
# latest revision was made from) has startup CPU boost, else "false".
template_cpu_boost() {
  describe "$1" | python3 -c '
import json, sys
template = json.load(sys.stdin).get("spec", {}).get("template", {})
print(template.get("metadata", {}).get("annotations", {}).get("run.googleapis.com/startup-cpu-boost", "false"))'
}

# The Cloud Functions API carries no startup CPU boost, so Terraform cannot set it and an
# apply may leave it off a new revision: set it through Cloud Run when the template differs
# from Terraform's setting. That makes one more revision, with no traffic (--no-traffic;
# the pin step also pinned traffic to a named revision), and that revision is the one
# tagged candidate. Nothing changes when the template already agrees.
sync_cpu_boost() {
  local service="$1" wanted="$2" current flag
  current="$(template_cpu_boost "$service")"
  [[ "$current" == "$wanted" ]] && return 0
  if [[ "$wanted" == true ]]; then flag=--cpu-boost; else flag=--no-cpu-boost; fi
  gcloud run services update "$service" --region="$REGION" "$flag" --no-traffic --quiet
  echo "$service: startup CPU boost $wanted in $(latest_revision "$service")"
}

# The function (entry point) a Cloud Run service runs: the last part of the load
# balancer's candidate path (terraform/edge.tf, candidate_paths).
entry_point_of() {
  case "$1" in
    *persona-route*) echo persona_route ;;
    *chat*) echo chat ;;
    *) return 1 ;;
  esac
}

edge_url() {
  local url="${EDGE_URL:-}"
  if [[ -z "$url" && -r "${EDGE_URL_FILE:-/workspace/edge_url}" ]]; then
    url="$(cat "${EDGE_URL_FILE:-/workspace/edge_url}")"
  fi
  echo "${url%/}"
}

update_traffic() {
  local service="$1"
  shift
  gcloud run services update-traffic "$service" --region="$REGION" --quiet "$@"
}

stable_of() { cat "$STATE/$1.stable" 2>/dev/null || true; }
candidate_of() { cat "$STATE/$1.candidate" 2>/dev/null || true; }

cmd_pin() {
  for service in $SERVICES; do
    if ! exists "$service"; then
      echo "$service: not deployed yet (first deployment)"
      continue
    fi
    local stable
    stable="$(serving_revision "$service")"
    echo "$stable" >"$STATE/$service.stable"
    update_traffic "$service" --to-revisions="$stable=100"
    echo "$service: pinned 100% to $stable"
  done
}

cmd_candidate() {
  local boosted
  boosted="$(boost_services)"
  for service in $SERVICES; do
    local new stable
    if [[ " $boosted " == *" $service "* ]]; then
      sync_cpu_boost "$service" true
    else
      sync_cpu_boost "$service" false
    fi
    new="$(latest_revision "$service")"
    stable="$(stable_of "$service")"
    if [[ -n "$stable" && "$new" == "$stable" ]]; then
      echo "$service: no new revision (code and configuration unchanged)"
      rm -f "$STATE/$service.candidate"
      continue
    fi
    echo "$new" >"$STATE/$service.candidate"
    if [[ -z "$stable" ]]; then
      # First deployment: nothing serves learners yet, so no split to protect; tag the
      # newest revision for the smoke test (promote gives it all traffic).
      update_traffic "$service" --set-tags="candidate=$new"
    else
      # Keeps (or puts back) 100% on stable even if the deploy moved traffic.
      update_traffic "$service" --to-revisions="$stable=100" --set-tags="candidate=$new"
    fi
    echo "$service: $new deployed with no traffic, tag candidate"
  done
}

# A few attempts: a load balancer change (a new route, a first deployment) takes a while
# to reach every Google front end.
expect_status() {
  local expected="$1" method="$2" url="$3" got attempt
  for ((attempt = 1; attempt <= SMOKE_ATTEMPTS; attempt++)); do
    got="$(curl -s -o /dev/null -w '%{http_code}' -X "$method" --max-time 60 "$url" || true)"
    if [[ "$got" == "$expected" ]]; then
      echo "ok: $method $url -> $got"
      return 0
    fi
    ((attempt < SMOKE_ATTEMPTS)) && sleep "$SMOKE_RETRY_SECONDS"
  done
  echo "smoke test failed: $method $url answered $got, expected $expected" >&2
  return 1
}

# The functions accept requests from the load balancer only (ingress
# internal-and-cloud-load-balancing): the candidate's own run.app URL refuses Cloud Build.
# The edge routes /_candidate/<region>/<entry point>/ to the revision tagged `candidate`
# in that region, so each region's candidate is checked through the whole edge.
cmd_smoke() {
  local edge
  edge="$(edge_url)"
  for service in $SERVICES; do
    [[ -n "$(candidate_of "$service")" ]] || continue
    [[ -n "$edge" ]] || { echo "no EDGE_URL (terraform output api_url) to smoke-test through" >&2; return 1; }
    local entry_point url
    entry_point="$(entry_point_of "$service")" || { echo "$service: no candidate route" >&2; return 1; }
    url="$edge/_candidate/$REGION/$entry_point"
    expect_status 200 GET "$url/health"
    expect_status 200 GET "$url/ready"
    case "$service" in
      *persona-route*) expect_status 401 GET "$url/v1/personas" ;;
      *) expect_status 401 GET "$url/v1/conversations" ;;
    esac
  done
}

cmd_canary() {
  local percent="${1:?canary percent}"
  for service in $SERVICES; do
    local new stable
    new="$(candidate_of "$service")"
    stable="$(stable_of "$service")"
    [[ -n "$new" && -n "$stable" ]] || continue
    update_traffic "$service" --to-revisions="$new=$percent,$stable=$((100 - percent))"
    echo "$service: $percent% to $new, $((100 - percent))% to $stable"
  done
}

cmd_bake() {
  local seconds="${1:?bake seconds}"
  sleep "$seconds"
  for service in $SERVICES; do
    local new errors
    new="$(candidate_of "$service")"
    [[ -n "$new" && -n "$(stable_of "$service")" ]] || continue
    errors="$(gcloud logging read \
      "resource.type=\"cloud_run_revision\" AND resource.labels.revision_name=\"$new\" AND httpRequest.status>=500" \
      --freshness="$((seconds + 120))s" --limit=1000 --format='value(httpRequest.status)' | wc -l)"
    echo "$service: $new answered $errors 5xx during the canary"
    if ((errors > MAX_5XX)); then
      cmd_rollback
      echo "canary failed: rolled back" >&2
      return 1
    fi
  done
}

cmd_promote() {
  for service in $SERVICES; do
    local new
    new="$(candidate_of "$service")"
    [[ -n "$new" ]] || continue
    update_traffic "$service" --to-revisions="$new=100"
    echo "$service: 100% to $new"
  done
}

cmd_rollback() {
  for service in $SERVICES; do
    local stable
    stable="$(stable_of "$service")"
    [[ -n "$stable" ]] || continue
    update_traffic "$service" --to-revisions="$stable=100"
    echo "$service: rolled back, 100% to $stable"
  done
}

command="${1:-}"
shift || true
case "$command" in
  pin | candidate | smoke | canary | bake | promote | rollback) "cmd_$command" "$@" ;;
  *)
    sed -n '2,22p' "$0"
    exit 2
    ;;
esac
