// Panel view of the `optimized_images` kind: generated images as a grid of equal tiles.
//
// Activation maximization logs one image per target (caption: the class or unit and its final
// objective value); DeepDream one image per probe (original | dream). The generic list lets the
// last image of an incomplete row grow to the full panel width; here every tile gets the same
// column width (about twice the image's own size, so small images stay sharp and comparable
// across targets and runs). Items keep the generic `.tbv-item img` (lightbox, tooltips).

import {createItems} from "./views.js";

const MIN_COLUMN = 110;
const MAX_COLUMN = 280;

/**
 * The panel body for one /items answer of kind `optimized_images`.
 * @param {!Object} response the /items JSON answer
 * @param {function(!Object): string} imageUrl item -> absolute image URL
 * @return {!DocumentFragment}
 */
export function createOptimizedImages(response, imageUrl) {
  const fragment = createItems(response, imageUrl);
  const list = fragment.querySelector(".tbv-items");
  if (list) {
    const items = Array.isArray(response.items) ? response.items : [];
    const width = Math.max(0, ...items.map((item) => Number(item.width) || 0));
    const column = Math.min(MAX_COLUMN, Math.max(MIN_COLUMN, 2 * width));
    list.classList.add("tbv-optimized-grid");
    list.style.display = "grid";
    list.style.gridTemplateColumns = `repeat(auto-fill, minmax(${column}px, 1fr))`;
  }
  return fragment;
}
