// Panel view of the `deepdream` kind: one tile per probe image (original left, dream right),
// equal tiles as in the activation-maximization view, with the layer's energy gain per image.

import {createTiles} from "./kind_activation_maximization.js";
import {h} from "./views.js";

/**
 * The panel body for one /items answer of kind `deepdream`.
 * @param {!Object} response the /items JSON answer
 * @param {function(!Object): string} imageUrl item -> absolute image URL
 * @return {!DocumentFragment}
 */
export function createDeepDream(response, imageUrl) {
  const meta = response.meta && typeof response.meta === "object" ? response.meta : {};
  const fragment = createTiles(response, imageUrl);
  fragment.querySelector(".tbv-items")?.classList.add("tbv-deepdream");
  const parts = [];
  if (typeof meta.layer === "string") parts.push(`dreaming ${meta.layer}`);
  if (Number.isInteger(meta.octaves)) parts.push(`${meta.octaves} octaves`);
  if (Number.isInteger(meta.steps_per_octave)) parts.push(`${meta.steps_per_octave} steps each`);
  parts.push("original | dream");
  fragment.prepend(h("div", "tbv-kind-summary", parts.join(" · ")));
  return fragment;
}
