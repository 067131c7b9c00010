// tb-viz frontend: data access (HTTP routes, caches, step helpers).
//
// Run and tag names are data: every collection keyed by them is a Map (a run named "__proto__"
// must not set a prototype).

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

/** Requests sent so far, per route (the page-load benchmark reads it). */
export const requestCounts = new Map();

async function fetchJSON(route, url) {
  requestCounts.set(route, (requestCounts.get(route) || 0) + 1);
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

const isObject = (value) => value !== null && typeof value === "object" && !Array.isArray(value);

/**
 * @typedef {{kind: string, description: string, steps: !Array<number>}} TagInfo
 * @typedef {{tags: !Map<string, !Map<string, TagInfo>>, scalars: !Map<string, !Map<string, number>>,
 *     samplesPerTag: ?number, signature: string}} Listing
 */

/**
 * Fetches /tags: tb_viz tags per run (steps ascending), the runs' scalar tags with their
 * largest step, and how many steps per tag the server keeps (null: all).
 * @return {!Promise<Listing>}
 */
export async function fetchListing() {
  const data = await fetchJSON("/tags", routeUrl("tags"));
  const tags = new Map();
  for (const [run, runTags] of Object.entries(isObject(data) && isObject(data.runs) ? data.runs : {})) {
    if (!isObject(runTags)) continue;
    const byTag = new Map();
    for (const [tag, info] of Object.entries(runTags)) {
      const steps = (Array.isArray(info && info.steps) ? info.steps : [])
        .map(Number).filter(Number.isFinite).sort((a, b) => a - b);
      byTag.set(tag, {
        kind: info && typeof info.kind === "string" && info.kind ? info.kind : "other",
        description: info && info.description ? String(info.description) : "",
        steps,
      });
    }
    tags.set(run, byTag);
  }
  const scalars = new Map();
  for (const [run, runTags] of Object.entries(isObject(data) && isObject(data.scalars) ? data.scalars : {})) {
    if (!isObject(runTags)) continue;
    scalars.set(run, new Map(Object.entries(runTags).filter(([, step]) => Number.isFinite(step))));
  }
  const limit = isObject(data) ? Number(data.samples_per_tag) : NaN;
  return {tags, scalars, samplesPerTag: limit > 0 ? limit : null, signature: JSON.stringify(data)};
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

// scalar tag -> {version, promise of Map<run, {steps, values}>}
const scalarCache = new Map();

/**
 * One scalar tag's curves in every run, as Map<run, {steps, values}> (values may hold null).
 * Cached per tag until `version` (what the caller knows of the tag's latest steps) changes.
 * @param {string} tag
 * @param {string} version
 * @return {!Promise<!Map<string, {steps: !Array<number>, values: !Array<?number>}>>}
 */
export function fetchScalars(tag, version) {
  const cached = scalarCache.get(tag);
  if (cached && cached.version === version) return cached.promise;
  const promise = fetchJSON("/scalars", routeUrl("scalars", {tag})).then((data) => {
    const curves = new Map();
    for (const series of Array.isArray(data && data.series) ? data.series : []) {
      if (!series || typeof series.run !== "string" || !Array.isArray(series.steps) || !Array.isArray(series.values)) continue;
      const steps = series.steps.map(Number);
      const values = series.values.map((v) => (typeof v === "number" && Number.isFinite(v) ? v : null));
      if (steps.length === values.length) curves.set(series.run, {steps, values});
    }
    return curves;
  });
  promise.catch(() => {
    if (scalarCache.get(tag) && scalarCache.get(tag).promise === promise) scalarCache.delete(tag);
  });
  scalarCache.set(tag, {version, promise});
  return promise;
}

/** Forgets every cached answer (TensorBoard's reload button). */
export function clearCaches() {
  itemCache.clear();
  scalarCache.clear();
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
  let low = 0;
  let high = steps.length - 1;
  let found = null;
  while (low <= high) {
    const middle = (low + high) >> 1;
    if (steps[middle] <= target) {
      found = steps[middle];
      low = middle + 1;
    } else {
      high = middle - 1;
    }
  }
  return found;
}

/**
 * The step of an ascending list closest to target (the earlier one on a tie), or null when empty.
 * @param {!Array<number>} steps
 * @param {number} target
 * @return {?number}
 */
export function nearestStep(steps, target) {
  if (!steps.length) return null;
  const before = stepAtOrBefore(steps, target);
  const after = steps.find((step) => step >= target);
  if (before === null) return after;
  if (after === undefined) return before;
  return target - before <= after - target ? before : after;
}
