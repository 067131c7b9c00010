// Panel view of the `activation_maps` kind: one item per probe image (the image, then one tile
// per shown channel) under a summary of the channel selection and the feature shape.

import {createItems} from "./items.js";
import {h} from "./views.js";

/**
 * The panel body for one /items answer of kind `activation_maps`.
 * @param {!Object} response the /items JSON answer
 * @param {function(!Object): string} imageUrl item -> absolute image URL
 * @return {!DocumentFragment}
 */
export function createActivationMaps(response, imageUrl) {
  const meta = response.meta && typeof response.meta === "object" ? response.meta : {};
  const fragment = createItems(response, imageUrl);
  const parts = [];
  if (Number.isInteger(meta.channels_shown)) {
    const of = Number.isInteger(meta.channels_total) ? ` of ${meta.channels_total}` : "";
    parts.push(`${meta.channels_shown}${of} channels${typeof meta.selection === "string" ? ` (${meta.selection})` : ""}`);
  }
  if (Array.isArray(meta.feature_shape) && meta.feature_shape.every(Number.isInteger)) {
    parts.push(`features ${meta.feature_shape.join("×")}`);
  }
  if (parts.length) fragment.prepend(h("div", "tbv-kind-summary", parts.join(" · ")));
  fragment.querySelector(".tbv-items")?.classList.add("tbv-activation-maps");
  return fragment;
}
