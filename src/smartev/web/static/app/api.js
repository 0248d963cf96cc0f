// The one way pages talk to the platform: JSON calls with the bearer token, a live stream (SSE read over
// fetch, so the token travels in a header and never in a URL), and errors turned into words.

const TOKEN_KEY = "smartev.token";

export class ApiError extends Error {
  constructor(status, message, body = null) {
    super(message);
    this.status = status;
    this.body = body; // the parsed error body, e.g. {detail: [{loc, msg}]} of a 422
  }

  /** FastAPI's [{loc, msg}] list as [[field path without "body", msg]] (empty when the detail is a string). */
  fields() {
    const detail = this.body && this.body.detail;
    if (!Array.isArray(detail)) return [];
    return detail.map((d) => [(d.loc || []).filter((p) => p !== "body" && p !== "query").join("."), d.msg || ""]);
  }
}

export function token() {
  return localStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  if (value) localStorage.setItem(TOKEN_KEY, value);
  else localStorage.removeItem(TOKEN_KEY);
}

/** The platform's error body in words: {"detail": "..."} or FastAPI's [{loc, msg}] list. */
export function describe(status, body) {
  const detail = body && body.detail;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail
      .map((d) => {
        const where = (d.loc || []).filter((p) => p !== "body" && p !== "query").join(".");
        return where ? `${where}: ${d.msg}` : d.msg;
      })
      .join("; ");
  }
  if (status === 0) return "the platform cannot be reached; check your connection";
  return `the platform answered ${status}`;
}

/** Call the API. `body` is sent as JSON, `form` as a URL-encoded form. Throws ApiError. */
export async function api(path, { method = "GET", body, form, signal } = {}) {
  const headers = { Accept: "application/json" };
  const t = token();
  if (t) headers.Authorization = `Bearer ${t}`;
  let payload;
  if (form) {
    headers["Content-Type"] = "application/x-www-form-urlencoded";
    payload = new URLSearchParams(form).toString();
  } else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body: payload, signal });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, describe(0, null));
  }
  if (response.status === 401 && t) {
    setToken(null);
    window.dispatchEvent(new CustomEvent("smartev:logged-out"));
  }
  if (response.status === 204) return null;
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) throw new ApiError(response.status, describe(response.status, data), data);
  return data;
}

/**
 * Follow a server-sent-event stream; calls onEvent(kind, data) per event and onState("live"|"reconnecting").
 * Reconnects with backoff until close() is called. Returns { close }.
 */
export function stream(path, onEvent, onState = () => {}) {
  let closed = false;
  let controller = null;
  let delay = 1000;
  async function run() {
    while (!closed) {
      controller = new AbortController();
      try {
        const response = await fetch(path, {
          headers: { Accept: "text/event-stream", Authorization: `Bearer ${token()}` },
          signal: controller.signal,
        });
        if (response.status === 401 || response.status === 403 || response.status === 404) {
          onState("refused", response.status);
          return;
        }
        if (!response.ok || !response.body) throw new Error(`stream answered ${response.status}`);
        onState("live");
        delay = 1000;
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            let kind = "message";
            const lines = [];
            for (const line of block.split("\n")) {
              if (line.startsWith("event:")) kind = line.slice(6).trim();
              else if (line.startsWith("data:")) lines.push(line.slice(5).trimStart());
            }
            if (lines.length) {
              try {
                onEvent(kind, JSON.parse(lines.join("\n")));
              } catch (err) {
                console.error("bad live event", err);
              }
            }
          }
        }
      } catch (err) {
        if (closed) return;
      }
      if (closed) return;
      onState("reconnecting");
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 15000);
    }
  }
  run();
  return {
    close() {
      closed = true;
      if (controller) controller.abort();
    },
  };
}

/** The web settings of this platform (tile URL ...), fetched once. */
let configPromise = null;
export function webConfig() {
  if (!configPromise) {
    configPromise = api("/api/v1/web/config").catch((err) => {
      configPromise = null; // try again next time rather than caching the failure
      throw err;
    });
  }
  return configPromise;
}
