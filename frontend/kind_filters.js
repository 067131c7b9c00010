// Panel view of the `filters` kind: the layer's filter grid (one item) under a one-line summary
// of what it shows (how many filters, RGB or per input channel, the weight range).

import {createItems} from "./items.js";
import {h} from "./views.js";

const count = (shown, total) => (Number.isInteger(shown) ? `${shown}${Number.isInteger(total) && total !== shown ? ` of ${total}` : ""}` : null);
const number = (value) => (typeof value === "number" && Number.isFinite(value) ? String(Number(value.toPrecision(3))) : null);

/**
 * The panel body for one /items answer of kind `filters`.
 * @param {!Object} response the /items JSON answer
 * @param {function(!Object): string} imageUrl item -> absolute image URL
 * @return {!DocumentFragment}
 */
export function createFilters(response, imageUrl) {
  const meta = response.meta && typeof response.meta === "object" ? response.meta : {};
  const fragment = createItems(response, imageUrl);
  const parts = [];
  const filters = count(meta.filters_shown, meta.filters_total);
  if (filters) parts.push(`${filters} filters`);
  if (meta.layout === "rgb") parts.push("RGB");
  else if (meta.layout === "per_channel") parts.push(`per input channel${count(meta.channels_shown, meta.channels_total) ? ` (${count(meta.channels_shown, meta.channels_total)})` : ""}`);
  if (number(meta.weight_min) && number(meta.weight_max)) parts.push(`weights ${number(meta.weight_min)} … ${number(meta.weight_max)}`);
  if (parts.length) fragment.prepend(h("div", "tbv-kind-summary", parts.join(" · ")));
  return fragment;
}
