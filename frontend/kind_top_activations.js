// Panel view of the `top_activations` kind: a gallery with one row per unit.
//
// Each `role: "patches"` item of a step is one unit's row image (its k receptive-field patches,
// best first, with the activation outlined); the manifest meta says the layer's receptive field,
// k, how many samples were ranked and where the patches lie in the row (`tile`, `gap`; see
// FORMAT.md). The values are drawn here, over each patch, from the item's `values` (nothing is
// burned into the pixels). With unit occlusion the step also has one `role: "occlusion"` item per
// unit, a transparent overlay laid out like the row (each patch's discrepancy map: its empirical
// receptive field); a checkbox shared by every top-k view of the page shows or hides it, and the
// summary line gives the layer's mean empirical receptive field next to the theoretical one.
// Rows keep the generic `.tbv-item img` (lightbox, tooltip with the values and sample ids).

import {createItems} from "./items.js";
import * as prefs from "./prefs.js";
import {h} from "./views.js";

const STYLE = `
.tbv-topk-frame { position: relative; width: fit-content; max-width: 100%; }
.tbv-topk-frame img { display: block; }
.tbv-topk-value { position: absolute; padding: 0 3px; background: rgba(0, 0, 0, 0.72); color: #fff;
  font: 500 10px/13px system-ui, sans-serif; pointer-events: none; white-space: nowrap; }
.tbv-topk-occlusion { position: absolute; inset: 0; background-size: 100% 100%; image-rendering: pixelated;
  pointer-events: none; display: none; }
.tbv-topk[data-occlusion="on"] .tbv-topk-occlusion { display: block; }
.tbv-topk-toggle { display: inline-flex; align-items: center; gap: 4px; margin-left: 10px; cursor: pointer; }
.tbv-topk-toggle input { margin: 0; accent-color: var(--tbv-accent, #f57c00); }
.tbv-topk-empirical { margin-left: 6px; }
`;

function ensureStyles() {
  if (document.getElementById("tbv-topk-style")) return;
  document.head.append(Object.assign(document.createElement("style"), {id: "tbv-topk-style", textContent: STYLE}));
}

/** A value as the label shows it (3 significant digits). */
export function formatValue(value) {
  return Math.abs(value) >= 1000 || (value !== 0 && Math.abs(value) < 0.01) ?
    value.toExponential(1) : String(Number(value.toPrecision(3)));
}

function sizeText(size) {
  return Array.isArray(size) ? `${Number(size[0]).toFixed(1)}x${Number(size[1]).toFixed(1)} px` : "?";
}

/** Shows or hides the occlusion overlays of every top-k gallery of the page, and syncs the checkboxes. */
function applyOcclusion(on) {
  for (const gallery of document.querySelectorAll(".tbv-topk")) gallery.dataset.occlusion = on ? "on" : "off";
  for (const box of document.querySelectorAll(".tbv-topk-toggle input")) box.checked = on;
}

/**
 * One line saying what the gallery shows: receptive field, k, samples, units; the empirical field
 * and the overlay toggle when the step has unit occlusion.
 * @param {!Object} meta
 * @return {!HTMLElement}
 */
function createSummary(meta) {
  const line = h("div", "tbv-topk-summary");
  line.style.margin = "0 0 4px";
  line.style.fontSize = "12px";
  const rf = h("span", "tbv-topk-rf", String(meta.rf || "receptive field unknown"));
  rf.style.fontWeight = "500";
  rf.title = `receptive field of one unit; each patch is this region of the input${
    meta.rf_complete === false ? " (lower bound: the region filled the largest input measured)" : ""}`;
  const parts = [];
  if (Number.isInteger(meta.k)) {
    parts.push(`top ${meta.k}${Number.isInteger(meta.samples) ? ` of ${meta.samples} samples` : ""}`);
  }
  if (Number.isInteger(meta.units_shown)) {
    parts.push(`${meta.units_shown}${Number.isInteger(meta.channels_total) ? ` of ${meta.channels_total}` : ""} units`);
  }
  parts.push("outline: activation ≥ ½ its max");
  line.append(rf, h("span", "tbv-muted", ` · ${parts.join(" · ")}`));
  const occlusion = meta.occlusion && typeof meta.occlusion === "object" ? meta.occlusion : null;
  if (occlusion) {
    const empirical = h("span", "tbv-topk-empirical", Array.isArray(occlusion.empirical) ?
      `· empirical RF ${sizeText(occlusion.empirical)} (mean of ${occlusion.maps} maps)` : "· no empirical RF");
    empirical.title = `unit occlusion: a ${(occlusion.window || []).join("x")} px occluder, stride ${
      (occlusion.stride || []).join("x")}, over the top ${occlusion.k} patches of each unit; the empirical ` +
      `receptive field is the box where the unit's drop reaches ${occlusion.threshold} of its maximum`;
    const toggle = h("label", "tbv-topk-toggle");
    const box = Object.assign(h("input"), {type: "checkbox", checked: prefs.get("topkOcclusion")});
    box.setAttribute("aria-label", "Overlay the unit occlusion maps (empirical receptive fields)");
    box.addEventListener("change", () => {
      prefs.set("topkOcclusion", box.checked);
      applyOcclusion(box.checked);
    });
    toggle.append(box, "occlusion overlay");
    line.append(empirical, toggle);
  }
  return line;
}

/**
 * The value labels of one row image, placed over its patches in percent of the image's size.
 * @param {!Object} item a `patches` item (width, height, values)
 * @param {!Object} meta the step's meta (tile, gap)
 * @return {!Array<!HTMLElement>}
 */
function valueLabels(item, meta) {
  const values = Array.isArray(item.values) ? item.values : [];
  const tile = Array.isArray(meta.tile) ? meta.tile.map(Number) : null;
  const gap = Number.isFinite(Number(meta.gap)) ? Number(meta.gap) : 0;
  const width = Number(item.width);
  const height = Number(item.height);
  if (!tile || !(width > 0) || !(height > 0)) return [];
  const labels = [];
  values.forEach((value, rank) => {
    if (typeof value !== "number" || !Number.isFinite(value)) return;
    const label = h("span", "tbv-topk-value", formatValue(value));
    label.dataset.rank = String(rank);
    label.style.left = `${(100 * (gap + rank * (tile[1] + gap))) / width}%`;
    label.style.top = `${(100 * gap) / height}%`;
    labels.push(label);
  });
  return labels;
}

/**
 * The panel body for one /items answer of kind `top_activations`.
 * @param {!Object} response the /items JSON answer
 * @param {function(!Object): string} imageUrl item -> absolute image URL
 * @return {!DocumentFragment}
 */
export function createTopActivations(response, imageUrl) {
  ensureStyles();
  const fragment = document.createDocumentFragment();
  const meta = response.meta && typeof response.meta === "object" ? response.meta : {};
  fragment.append(createSummary(meta));
  const all = Array.isArray(response.items) ? response.items.filter((item) => item && typeof item === "object") : [];
  const items = all.filter((item) => item.role === undefined || item.role === "patches");
  const overlays = new Map(all.filter((item) => item.role === "occlusion").map((item) => [item.unit, item]));
  if (!items.length) {
    fragment.append(h("div", "tbv-muted", "no units at this step"));
    return fragment;
  }
  const gallery = h("div", "tbv-topk");
  gallery.dataset.occlusion = prefs.get("topkOcclusion") ? "on" : "off";
  for (const item of items) {
    const row = h("div", "tbv-topk-row");
    row.dataset.unit = String(item.unit);
    row.style.marginBottom = "6px";
    row.append(createItems({tag: response.tag, items: [item]}, imageUrl));
    const img = row.querySelector("img");
    if (img) {
      const frame = h("div", "tbv-topk-frame");
      img.replaceWith(frame);
      frame.append(img);
      const overlay = overlays.get(item.unit);
      if (overlay) {
        const layer = h("div", "tbv-topk-occlusion");
        layer.style.backgroundImage = `url("${imageUrl(overlay).replace(/["\\\n]/g, encodeURIComponent)}")`;
        const sizes = Array.isArray(overlay.empirical_rf) ? overlay.empirical_rf : [];
        layer.title = `empirical RF per patch: ${sizes.map((s) => (s ? sizeText(s) : "–")).join(", ")}`;
        frame.append(layer);
      }
      frame.append(...valueLabels(item, meta));
    }
    gallery.append(row);
  }
  fragment.append(gallery);
  return fragment;
}
