// Panel view of the `activation_maximization` kind: generated images as a grid of equal tiles.
//
// Activation maximization logs one image per target (caption: the class or unit and its final
// objective value). Every tile gets the same column width (about twice the image's own size, so
// small images stay sharp and comparable across targets and runs). Items keep the generic
// `.tbv-item img` (lightbox, tooltips).

import {createItems} from "./items.js";
import {h} from "./views.js";

const MIN_COLUMN = 110;
const MAX_COLUMN = 280;

/**
 * The generic items of `response` laid out as equal tiles (`.tbv-tile-grid`).
 * @param {!Object} response the /items JSON answer
 * @param {function(!Object): string} imageUrl item -> absolute image URL
 * @return {!DocumentFragment}
 */
export function createTiles(response, imageUrl) {
  const fragment = createItems(response, imageUrl);
  const list = fragment.querySelector(".tbv-items");
  if (list) {
    const items = Array.isArray(response.items) ? response.items : [];
    const width = Math.max(0, ...items.map((item) => Number(item && item.width) || 0));
    const column = Math.min(MAX_COLUMN, Math.max(MIN_COLUMN, 2 * width));
    list.classList.add("tbv-tile-grid");
    list.style.gridTemplateColumns = `repeat(auto-fill, minmax(${column}px, 1fr))`;
  }
  return fragment;
}

/**
 * The panel body for one /items answer of kind `activation_maximization`.
 * @param {!Object} response the /items JSON answer
 * @param {function(!Object): string} imageUrl item -> absolute image URL
 * @return {!DocumentFragment}
 */
export function createActivationMaximization(response, imageUrl) {
  const meta = response.meta && typeof response.meta === "object" ? response.meta : {};
  const fragment = createTiles(response, imageUrl);
  if (typeof meta.objective === "string") {
    const parts = [meta.objective];
    if (typeof meta.param === "string") parts.push(`${meta.param} parametrization`);
    if (Number.isInteger(meta.steps)) parts.push(`${meta.steps} steps`);
    fragment.prepend(h("div", "tbv-kind-summary", parts.join(" · ")));
  }
  return fragment;
}
