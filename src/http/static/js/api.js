// The HTTP API with the signed-in user's token. A 401 anywhere means the token
// is gone or expired: listeners of "signed-out" bring the sign-in back.

const TOKEN_KEY = "trioscope.token";
export const events = new EventTarget();

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

// `withToken`: the token to send instead of the current one (a request that must
// still go out after signing out, with the credentials of what it ends);
// its 401 is then not the current session's.
export async function api(path, { method = "GET", body, signal, keepalive = false, withToken } = {}) {
  const headers = { Accept: "application/json" };
  const current = withToken === undefined ? token() : withToken;
  if (current) headers.Authorization = `Bearer ${current}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, { method, headers, signal, keepalive, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "unreachable", "the server cannot be reached");
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    // The metrics API answers in the Prometheus HTTP API's shape
    // ({"status": "error", "errorType", "error": "text"}); its 401 then comes
    // from the engine behind it (metrics.url), not from a refused token.
    const prometheus = Boolean(data && data.status === "error" && typeof data.error === "string");
    const error = (!prometheus && data && typeof data.error === "object" && data.error) || {};
    const failure = prometheus
      ? new ApiError(response.status, data.errorType || `http_${response.status}`, data.error)
      : new ApiError(response.status, error.code || `http_${response.status}`,
        error.message || `${method} ${path} answered ${response.status}`, error.details);
    failure.prometheus = prometheus;
    if (response.status === 401 && !prometheus && withToken === undefined) events.dispatchEvent(new CustomEvent("signed-out", { detail: failure }));
    throw failure;
  }
  return data;
}

// The subprotocols that carry the token to a WebSocket (a browser cannot set
// its headers, and a token in the URL ends up in proxy logs).
export function tokenProtocols() {
  const current = token();
  return current ? ["trioscope", `bearer.${current}`] : [];
}

// A WebSocket URL on this server.
export function socketUrl(path) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}${path}`;
}
