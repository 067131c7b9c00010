// Panel view of the `neural_style` kind: one row per probe image, the sources next to the
// results (content | style | texture of the style | stylized result), columns named in a header.

import {columnNames, createRows} from "./kind_feature_inversion.js";
import {h} from "./views.js";

/**
 * The panel body for one /items answer of kind `neural_style`.
 * @param {!Object} response the /items JSON answer
 * @param {function(!Object): string} imageUrl item -> absolute image URL
 * @return {!DocumentFragment}
 */
export function createNeuralStyle(response, imageUrl) {
  const meta = response.meta && typeof response.meta === "object" ? response.meta : {};
  const fragment = createRows(response, imageUrl, columnNames(meta));
  fragment.querySelector(".tbv-items")?.classList.add("tbv-neural-style");
  const parts = [];
  if (typeof meta.content_layer === "string") parts.push(`content at ${meta.content_layer}`);
  if (Array.isArray(meta.style_layers)) parts.push(`style (Gram) at ${meta.style_layers.length} layers`);
  if (typeof meta.style_weight === "number") parts.push(`style weight ${meta.style_weight}`);
  if (Number.isInteger(meta.steps)) parts.push(`${meta.steps} steps`);
  fragment.prepend(h("div", "tbv-kind-summary", parts.join(" · ")));
  return fragment;
}
