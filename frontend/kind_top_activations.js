// Panel view of the `top_activations` kind: a gallery with one row per unit.
//
// Each item of a step is one unit's row image (its k receptive-field patches, best first, with the
// activation outlined and its value drawn); the manifest meta says the layer's receptive field,
// k, and how many samples were ranked (see FORMAT.md). The rows are stacked full width, so the
// patches stay large enough to read, and every row keeps the generic `.tbv-item img` (lightbox,
// tooltip with the values, sample ids and positions).

import {createItems} from "./items.js";
import {h} from "./views.js";

/**
 * One line saying what the gallery shows: receptive field, k, samples, units.
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
  const rest = h("span", "tbv-muted", ` · ${parts.join(" · ")}`);
  line.append(rf, rest);
  return line;
}

/**
 * The panel body for one /items answer of kind `top_activations`.
 * @param {!Object} response the /items JSON answer
 * @param {function(!Object): string} imageUrl item -> absolute image URL
 * @return {!DocumentFragment}
 */
export function createTopActivations(response, imageUrl) {
  const fragment = document.createDocumentFragment();
  const meta = response.meta && typeof response.meta === "object" ? response.meta : {};
  fragment.append(createSummary(meta));
  const items = Array.isArray(response.items) ? response.items : [];
  if (!items.length) {
    fragment.append(h("div", "tbv-muted", "no units at this step"));
    return fragment;
  }
  const gallery = h("div", "tbv-topk");
  for (const item of items) {
    const row = h("div", "tbv-topk-row");
    row.dataset.unit = String(item.unit);
    row.style.marginBottom = "6px";
    row.append(createItems({tag: response.tag, items: [item]}, imageUrl));
    gallery.append(row);
  }
  fragment.append(gallery);
  return fragment;
}
