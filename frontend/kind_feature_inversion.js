// Panel view of the `feature_inversion` kind: one row per probe image (the original, then its
// reconstruction from each layer), under one header naming the columns (meta.columns).
// `createRows` is shared with the `neural_style` view (content | style | texture | result).

import {createItems} from "./items.js";
import {h} from "./views.js";

const MIN_ROW = 320;
const MAX_ROW = 1100;

/**
 * The column names of a rows view: `meta.columns` when it is a list of strings, else none.
 * @param {!Object} meta
 * @return {!Array<string>}
 */
export function columnNames(meta) {
  const columns = Array.isArray(meta.columns) ? meta.columns : [];
  return columns.every((name) => typeof name === "string") ? columns : [];
}

/**
 * The generic items of `response` as rows of equal width (about twice the images' own), under a
 * header with one label per column of the row images.
 * @param {!Object} response the /items JSON answer
 * @param {function(!Object): string} imageUrl item -> absolute image URL
 * @param {!Array<string>} columns the column names, left to right
 * @return {!DocumentFragment}
 */
export function createRows(response, imageUrl, columns) {
  const fragment = createItems(response, imageUrl);
  const list = fragment.querySelector(".tbv-items");
  if (!list) return fragment;
  const items = Array.isArray(response.items) ? response.items : [];
  const width = Math.max(0, ...items.map((item) => Number(item && item.width) || 0));
  const row = `${Math.min(MAX_ROW, Math.max(MIN_ROW, 2 * width))}px`;
  list.classList.add("tbv-tile-grid", "tbv-rows");
  list.style.gridTemplateColumns = `minmax(0, ${row})`;
  if (columns.length) {
    const head = h("div", "tbv-row-head");
    head.style.maxWidth = row;
    head.style.gridTemplateColumns = `repeat(${columns.length}, minmax(0, 1fr))`;
    for (const name of columns) {
      const label = h("span", "tbv-row-label", name);
      label.title = name;
      head.append(label);
    }
    list.before(head);
  }
  return fragment;
}

/**
 * The panel body for one /items answer of kind `feature_inversion`.
 * @param {!Object} response the /items JSON answer
 * @param {function(!Object): string} imageUrl item -> absolute image URL
 * @return {!DocumentFragment}
 */
export function createFeatureInversion(response, imageUrl) {
  const meta = response.meta && typeof response.meta === "object" ? response.meta : {};
  const fragment = createRows(response, imageUrl, columnNames(meta));
  fragment.querySelector(".tbv-items")?.classList.add("tbv-feature-inversion");
  const parts = ["reconstructed from each layer's features"];
  if (typeof meta.param === "string") parts.push(`${meta.param} parametrization`);
  if (Number.isInteger(meta.steps)) parts.push(`${meta.steps} steps`);
  if (Number.isInteger(meta.images) && Array.isArray(meta.layers)) {
    parts.push(`${meta.images} images × ${meta.layers.length} layers in one batch`);
  }
  fragment.prepend(h("div", "tbv-kind-summary", parts.join(" · ")));
  return fragment;
}
