// tb-viz frontend: data access (HTTP routes, item cache, step helpers) and the
// postMessage bridge to the TensorBoard page that hosts the plugin iframe.

// This module is served at /data/plugin/tb_viz/static/model.js; the data routes
// live one level up. fetch() resolves relative URLs against the document, so
// every URL is built from import.meta.url.
const PLUGIN_ROOT = new URL("../", import.meta.url);

/** An HTTP or network failure, with the status and the server's message. */
export class HttpError extends Error {
  /**
   * @param {string} route  what was asked for, e.g. "/items"
   * @param {number} status HTTP status, 0 for a network error
   * @param {string} text   the server's message (plain text), or a description
   */
  constructor(route, status, text) {
    const detail = text.length > 500 ? `${text.slice(0, 500)}…` : text;
    super(status ? `HTTP ${status} from ${route}: ${detail}` : `${route}: ${detail}`);
    this.name = "HttpError";
    this.status = status;
    this.text = detail;
  }
}

/**
 * URL of a plugin route with query parameters (values are encoded).
 * @param {string} route e.g. "tags", "items"
 * @param {Object<string, (string|number|undefined)>=} params
 * @return {URL}
 */
export function routeUrl(route, params = {}) {
  const url = new URL(route, PLUGIN_ROOT);
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null) url.searchParams.set(key, String(value));
  }
  return url;
}

/**
 * Absolute URL of an item's image (`item.url` is relative to /data/plugin/tb_viz/).
 * @param {{url: string}} item
 * @return {string}
 */
export function itemImageUrl(item) {
  return new URL(String(item.url), PLUGIN_ROOT).href;
}

async function fetchJSON(route, url) {
  let response;
  try {
    response = await fetch(url, {credentials: "same-origin"});
  } catch (e) {
    throw new HttpError(route, 0, `network error (${e.message})`);
  }
  if (!response.ok) {
    const text = await response.text().catch(() => "");
    throw new HttpError(route, response.status, text.trim() || response.statusText);
  }
  try {
    return await response.json();
  } catch (e) {
    throw new HttpError(route, response.status, `invalid JSON (${e.message})`);
  }
}

/**
 * Fetches /tags and normalizes it to {run: {tag: {kind, description, steps}}},
 * steps as ascending numbers. Never cached: called on every reload.
 * @return {!Promise<!Object<string, !Object<string, {kind: string, description: string, steps: !Array<number>}>>>}
 */
export async function fetchTags() {
  const data = await fetchJSON("/tags", routeUrl("tags"));
  const runs = data && typeof data.runs === "object" && data.runs ? data.runs : {};
  const result = {};
  for (const [run, tags] of Object.entries(runs)) {
    if (!tags || typeof tags !== "object") continue;
    result[run] = {};
    for (const [tag, info] of Object.entries(tags)) {
      const steps = (Array.isArray(info && info.steps) ? info.steps : [])
        .map(Number).filter(Number.isFinite).sort((a, b) => a - b);
      result[run][tag] = {
        kind: info && info.kind ? String(info.kind) : "other",
        description: info && info.description ? String(info.description) : "",
        steps,
      };
    }
  }
  return result;
}

// (run, tag, step) -> Promise of the /items answer. Failed requests are evicted.
const itemCache = new Map();

/**
 * One tag's items at one step, cached per (run, tag, step).
 * @param {string} run
 * @param {string} tag
 * @param {number} step
 * @return {!Promise<!Object>} the /items JSON answer
 */
export function fetchItems(run, tag, step) {
  const key = JSON.stringify([run, tag, step]);
  let promise = itemCache.get(key);
  if (!promise) {
    promise = fetchJSON("/items", routeUrl("items", {run, tag, step}));
    promise.catch(() => {
      if (itemCache.get(key) === promise) itemCache.delete(key);
    });
    itemCache.set(key, promise);
  }
  return promise;
}

/** Forgets every cached /items answer (TensorBoard's reload button). */
export function clearItemCache() {
  itemCache.clear();
}

/**
 * Why an image URL failed to load: the HTTP status and message, re-fetched.
 * @param {string} url
 * @return {!Promise<!HttpError>}
 */
export async function explainImageError(url) {
  try {
    const response = await fetch(url, {credentials: "same-origin"});
    if (!response.ok) {
      const text = await response.text().catch(() => "");
      return new HttpError("/blob", response.status, text.trim() || response.statusText);
    }
    return new HttpError("/blob", response.status, "the image data could not be decoded");
  } catch (e) {
    return new HttpError("/blob", 0, `network error (${e.message})`);
  }
}

/**
 * The largest step <= target in an ascending list, or null if there is none.
 * @param {!Array<number>} steps
 * @param {number} target
 * @return {?number}
 */
export function stepAtOrBefore(steps, target) {
  let found = null;
  for (const step of steps) {
    if (step > target) break;
    found = step;
  }
  return found;
}

/**
 * Connects to TensorBoard's plugin host over a MessagePort, the protocol of
 * tensorboard/components/experimental/plugin_util/{plugin-guest,message}.ts:
 * the guest posts "experimental.bootstrap" with a port to window.parent, then
 * both sides exchange JSON strings {type, id, payload, error, isReply}; every
 * non-reply message is answered with a reply carrying the same type and id.
 * @param {!Object<string, function(*)>} listeners message type -> handler for
 *     notifications from the host (e.g. "experimental.RunsChanged")
 * @return {?{send: function(string, *, number): !Promise<*>}} null when the page
 *     is not inside a frame.
 */
export function connectBridge(listeners) {
  if (window.parent === window) return null;
  const channel = new MessageChannel();
  const port = channel.port1;
  const waiting = new Map();
  let nextId = 0;

  port.onmessage = (event) => {
    let message;
    try {
      message = JSON.parse(event.data);
    } catch (e) {
      return;
    }
    if (!message || typeof message !== "object") return;
    const {type, id, payload, error, isReply} = message;
    if (isReply) {
      const wait = waiting.get(id);
      if (!wait) return;
      waiting.delete(id);
      if (error) wait.reject(new Error(String(error)));
      else wait.resolve(payload);
      return;
    }
    let replyError = null;
    const listener = Object.prototype.hasOwnProperty.call(listeners, type) ? listeners[type] : null;
    try {
      if (listener) listener(payload);
    } catch (e) {
      replyError = String(e);
    }
    port.postMessage(JSON.stringify({type, id, payload: null, error: replyError, isReply: true}));
  };
  // The host is TensorBoard's own page (same origin: it reads event.source.frameElement).
  try {
    window.parent.postMessage("experimental.bootstrap", window.location.origin, [channel.port2]);
  } catch (e) {
    return null;
  }

  return {
    send(type, payload, timeoutMs) {
      const id = nextId++;
      port.postMessage(JSON.stringify({type, id, payload, error: null, isReply: false}));
      return new Promise((resolve, reject) => {
        waiting.set(id, {resolve, reject});
        setTimeout(() => {
          if (waiting.delete(id)) reject(new Error(`no answer to ${type} after ${timeoutMs} ms`));
        }, timeoutMs);
      });
    },
  };
}
