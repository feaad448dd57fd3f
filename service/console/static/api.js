// The public REST API (/v1) with the person's bearer token: JSON calls, Server-Sent Events
// read through fetch (EventSource cannot send an Authorization header) and downloads.

const TOKEN_KEY = "dvp-console.token";

/** The token lives in sessionStorage: this tab only, gone when the tab closes. */
export const session = {
  get token() { return sessionStorage.getItem(TOKEN_KEY) || ""; },
  set token(value) { sessionStorage.setItem(TOKEN_KEY, value); },
  forget() { sessionStorage.removeItem(TOKEN_KEY); },
};

/** A refusal of the API, from its problem+json document (RFC 9457 + the gateway's members). */
export class ApiError extends Error {
  constructor(problem, status) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.title = problem.title || `HTTP ${status}`;
    this.detail = problem.detail || "";
    this.code = problem.code || "";
    this.reason = problem.reason || "";
    this.fieldViolations = Array.isArray(problem.fieldViolations) ? problem.fieldViolations : [];
    this.preconditionViolations = Array.isArray(problem.preconditionViolations) ? problem.preconditionViolations : [];
    this.metadata = problem.metadata || {};
    this.requestId = problem.requestId || "";
  }
}

function unreachable(error) {
  return new ApiError({ title: "Cannot reach the gateway", detail: String(error && error.message || error) }, 0);
}

export function url(path, query) {
  const target = new URL(path, window.location.origin);
  for (const [key, value] of Object.entries(query || {})) {
    if (value === undefined || value === null || value === "") continue;
    target.searchParams.set(key, String(value));
  }
  return target.pathname + target.search;
}

function headers(extra) {
  const result = { ...extra };
  if (session.token) result.Authorization = `Bearer ${session.token}`;
  return result;
}

async function refusal(response) {
  let problem = {};
  try {
    problem = await response.json();
  } catch {
    problem = { title: response.statusText || `HTTP ${response.status}` };
  }
  const error = new ApiError(problem, response.status);
  if (response.status === 401) window.dispatchEvent(new CustomEvent("dvp:unauthenticated", { detail: error }));
  return error;
}

/**
 * fetch with the token, never cached; a network failure becomes ApiError ("Cannot reach
 * the gateway"), a refusal the API's problem as ApiError; leaving the page (AbortError) passes.
 */
async function send(path, query, init) {
  let response;
  try {
    response = await fetch(url(path, query), { ...init, headers: headers(init.headers || {}), cache: "no-store" });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw unreachable(error);
  }
  if (!response.ok) throw await refusal(response);
  return response;
}

/** A fresh idempotency key: one per action a person takes, reused if that action is retried. */
export function idempotencyKey() {
  return crypto.randomUUID();
}

/**
 * call("POST", "/v1/namespaces/demo/disk-snapshots", {body, query, idempotencyKey, signal})
 * -> the parsed JSON answer (null for 204); throws ApiError.
 */
export async function call(method, path, options = {}) {
  const extra = { Accept: "application/json" };
  if (options.body !== undefined) extra["Content-Type"] = "application/json";
  if (options.idempotencyKey) extra["Idempotency-Key"] = options.idempotencyKey;
  const response = await send(path, options.query, {
    method, headers: extra, signal: options.signal,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  if (response.status === 204) return null;
  return response.json();
}

/**
 * Read a Server-Sent Events stream until it ends or ``signal`` aborts; ``onEvent`` gets
 * {id, event, data} with data parsed as JSON. A final `event: error` is thrown as ApiError.
 */
export async function stream(path, { query, signal, onEvent, lastEventId } = {}) {
  const extra = { Accept: "text/event-stream" };
  if (lastEventId) extra["Last-Event-ID"] = lastEventId;
  const response = await send(path, query, { headers: extra, signal });
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let message = { id: "", event: "message", data: [] };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let newline;
    while ((newline = buffer.search(/\r\n|\r|\n/)) >= 0) {
      const line = buffer.slice(0, newline);
      buffer = buffer.slice(newline + (buffer.startsWith("\r\n", newline) ? 2 : 1));
      if (line === "") {
        if (message.data.length) {
          const data = JSON.parse(message.data.join("\n"));
          if (message.event === "error") throw new ApiError(data, data.status || 500);
          onEvent({ id: message.id, event: message.event, data });
        }
        message = { id: message.id, event: "message", data: [] };
      } else if (!line.startsWith(":")) {
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "data") message.data.push(text);
        else if (field === "event") message.event = text;
        else if (field === "id") message.id = text;
      }
    }
  }
}

/**
 * A JSON Lines answer read as it comes (``POST /v1/audit:verifyStream``): ``onLine`` gets
 * each parsed line and may return a value to stop reading and return it.
 */
export async function jsonLines(method, path, { query, signal, onLine } = {}) {
  const response = await send(path, query, { method, headers: { Accept: "application/x-ndjson" }, signal });
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    buffer += decoder.decode(value || new Uint8Array(), { stream: !done });
    let newline;
    while ((newline = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, newline).trim();
      buffer = buffer.slice(newline + 1);
      if (!line) continue;
      const answer = onLine(JSON.parse(line));
      if (answer !== undefined) {
        await reader.cancel();
        return answer;
      }
    }
    if (done) return undefined;
  }
}

/**
 * Fetch ``path`` with the token and hand it to the browser as a file named ``filename``;
 * ``accept`` chooses the representation (the audit export is CSV for "text/csv").
 */
export async function download(path, query, filename, accept = "") {
  const response = await send(path, query, { headers: accept ? { Accept: accept } : {} });
  const blob = await response.blob();
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
  return blob.size;
}
