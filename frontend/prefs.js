// tb-viz frontend: the user's choices, kept in localStorage (one key per choice, validated on
// load so that a corrupt or old value falls back to its default).

const PREFIX = "tb_viz.";

export const DENSITIES = ["compact", "normal", "large"];
export const COMPARE_MODES = ["side", "swipe"];

/** name -> [default, validator]. */
const SCHEMA = {
  deselectedRuns: [[], (v) => Array.isArray(v) && v.every((r) => typeof r === "string")],
  linkSteps: [false, (v) => typeof v === "boolean"],
  tagFilter: ["", (v) => typeof v === "string" && v.length <= 1000],
  collapsed: [[], (v) => Array.isArray(v) && v.every((k) => typeof k === "string")],
  density: ["normal", (v) => DENSITIES.includes(v)],
  upscale: [false, (v) => typeof v === "boolean"],
  curveTags: [null, (v) => v === null || (Array.isArray(v) && v.every((t) => typeof t === "string"))],
  compareMode: ["side", (v) => COMPARE_MODES.includes(v)],
  pollMs: [5000, (v) => Number.isInteger(v) && v >= 200 && v <= 600000],
  topkOcclusion: [false, (v) => typeof v === "boolean"],
};

const values = new Map();

function read(name) {
  const [fallback, valid] = SCHEMA[name];
  try {
    const text = window.localStorage.getItem(PREFIX + name);
    if (text === null) return fallback;
    let value = JSON.parse(text);
    if (name === "linkSteps" && (value === 0 || value === 1)) value = value === 1; // stored as "0"/"1" once
    return valid(value) ? value : fallback;
  } catch (e) {
    return fallback;
  }
}

/**
 * The current value of a preference.
 * @param {string} name one of the SCHEMA keys, e.g. "density"
 * @return {*}
 */
export function get(name) {
  if (!Object.prototype.hasOwnProperty.call(SCHEMA, name)) throw new Error(`unknown preference ${name}`);
  if (!values.has(name)) values.set(name, read(name));
  return values.get(name);
}

/**
 * Changes and stores a preference (invalid values are refused with an Error).
 * @param {string} name
 * @param {*} value
 */
export function set(name, value) {
  const [, valid] = SCHEMA[name] || [];
  if (!valid || !valid(value)) throw new Error(`invalid value for preference ${name}: ${JSON.stringify(value)}`);
  values.set(name, value);
  try {
    window.localStorage.setItem(PREFIX + name, JSON.stringify(value));
  } catch (e) {
    // Not persisted; the UI keeps working.
  }
}
