// The API client shared by both pages: configuration, sign-in, JSON calls, SSE streams and
// errors people understand.
//
// config.json (written by `ion serve` locally, by Terraform when deployed):
//   {"api_base": "" | "https://api.example.com", "page_size"?: 20,
//    "auth": {"mode": "dev", "token", "operator_token"}            local dev tokens
//          | {"mode": "firebase", "api_key"}                        Firebase Auth (email/password)
//          | {"mode": "none"}}
// Firebase ID tokens are JWTs the API verifies through its JWKS (ION_JWKS_URL); an
// operator's token carries the role claim (ION_OPERATOR_CLAIM) as a Firebase custom claim.

import { t } from "./i18n.js";

const SESSION_KEY = "ion.session";
const IDENTITY_URL = "https://identitytoolkit.googleapis.com/v1/accounts:signInWithPassword";
const REFRESH_URL = "https://securetoken.googleapis.com/v1/token";

export class ApiError extends Error {
  constructor(status, code, message, { retryAfter = null, requestId = null, body = null } = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
    this.requestId = requestId;
    this.body = body;
  }

  // The sentence shown to the learner.
  get human() {
    if (this.code === "signin_failed") return this.message;
    if (this.status === 0) return t("err.offline");
    if (this.status === 401) return t("err.signin");
    if (this.status === 404) return t("err.not_found");
    if (this.status === 409) return t("err.conflict");
    if (this.status === 429 && this.code === "budget_exhausted") {
      return t("err.budget_exhausted", { time: formatWait(this.retryAfter ?? 0) });
    }
    if (this.status === 429) return t("err.rate_limited", { seconds: this.retryAfter ?? 60 });
    if (this.status === 503) return t("err.unavailable");
    if (this.code === "blocked") return t("err.blocked");
    if (this.status === 400 || this.status === 422 || this.status === 413) {
      return t("err.invalid", { detail: this.message });
    }
    if (this.status === 403) return this.message;
    return t("err.generic", { id: this.requestId || "-" });
  }
}

function formatWait(seconds) {
  const h = Math.floor(seconds / 3600);
  const m = Math.ceil((seconds % 3600) / 60);
  return h > 0 ? `${h}h ${m}m` : `${m}m`;
}

let configPromise = null;

export function loadConfig() {
  if (!configPromise) {
    configPromise = fetch("config.json", { cache: "no-store" }).then((r) => {
      if (!r.ok) throw new ApiError(r.status, "config", t("err.no_auth"));
      return r.json();
    });
  }
  return configPromise;
}

function readSession() {
  try {
    return JSON.parse(window.sessionStorage.getItem(SESSION_KEY) || "null");
  } catch {
    return null;
  }
}

function writeSession(session) {
  if (session) window.sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
  else window.sessionStorage.removeItem(SESSION_KEY);
}

// The bearer token of the signed-in user; `null` when a sign-in form must be shown.
export async function currentToken({ operator = false } = {}) {
  const config = await loadConfig();
  const auth = config.auth || { mode: "none" };
  if (auth.mode === "dev") return (operator && auth.operator_token) || auth.token;
  if (auth.mode !== "firebase") throw new ApiError(401, "no_auth", t("err.no_auth"));
  const session = readSession();
  if (!session) return null;
  if (Date.now() < session.expiresAt - 60_000) return session.idToken;
  return refreshFirebase(auth, session);
}

export function signInRequired() {
  return loadConfig().then((c) => (c.auth || {}).mode === "firebase" && !readSession());
}

export async function signIn(email, password) {
  const { auth } = await loadConfig();
  const response = await fetch(`${IDENTITY_URL}?key=${encodeURIComponent(auth.api_key)}`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ email, password, returnSecureToken: true }),
  });
  if (!response.ok) throw new ApiError(401, "signin_failed", t("signin.failed"));
  const body = await response.json();
  writeSession({
    idToken: body.idToken,
    refreshToken: body.refreshToken,
    expiresAt: Date.now() + Number(body.expiresIn) * 1000,
  });
}

async function refreshFirebase(auth, session) {
  const response = await fetch(`${REFRESH_URL}?key=${encodeURIComponent(auth.api_key)}`, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ grant_type: "refresh_token", refresh_token: session.refreshToken }),
  });
  if (!response.ok) {
    writeSession(null);
    return null;
  }
  const body = await response.json();
  writeSession({
    idToken: body.id_token,
    refreshToken: body.refresh_token,
    expiresAt: Date.now() + Number(body.expires_in) * 1000,
  });
  return body.id_token;
}

export function signOut() {
  writeSession(null);
}

async function errorFrom(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  const error = (body && body.error) || {};
  const retry = Number.parseInt(response.headers.get("Retry-After") || "", 10);
  return new ApiError(response.status, error.code || "http_error", error.message || response.statusText, {
    retryAfter: Number.isFinite(retry) ? retry : null,
    requestId: (body && body.request_id) || response.headers.get("X-Request-Id"),
    body,
  });
}

export async function request(path, { method = "GET", body, operator = false, signal, headers = {} } = {}) {
  const config = await loadConfig();
  const token = await currentToken({ operator });
  if (!token) throw new ApiError(401, "signin_required", t("err.signin"));
  const init = { method, signal, headers: { Authorization: `Bearer ${token}`, ...headers } };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  if (!navigator.onLine) throw new ApiError(0, "offline", t("err.offline"));
  let response;
  try {
    response = await fetch(`${config.api_base || ""}${path}`, init);
  } catch (exc) {
    if (exc && exc.name === "AbortError") throw exc;
    throw new ApiError(0, "offline", t("err.offline"));
  }
  if (!response.ok) throw await errorFrom(response);
  return response;
}

export async function getJson(path, options) {
  const response = await request(path, options);
  return response.status === 204 ? null : response.json();
}

// POST /v1/chat as Server-Sent Events read through fetch (EventSource cannot POST).
// `onEvent(name, data)` gets meta, delta, done and error in order.
export async function streamChat(body, { signal, onEvent }) {
  const response = await request("/v1/chat", {
    method: "POST",
    body: { ...body, stream: true },
    signal,
    headers: { Accept: "text/event-stream" },
  });
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
      }
      if (data.length) onEvent(name, JSON.parse(data.join("\n")));
    }
  }
}
