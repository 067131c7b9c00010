// Panel views per kind. A kind with a view of its own (a heatmap grid, a scatter plot...) adds a
// module `kind_<name>.js` exporting a builder with the signature of Views.createItems and registers
// it here; every other kind gets the generic image list with captions.

import * as Views from "./views.js";
import {createTopActivations} from "./kind_top_activations.js";
import {createEmbeddings} from "./kind_embeddings.js";
import {createAttributionGrid} from "./kind_attributions.js";
import {createOptimizedImages} from "./kind_optimized_images.js";

/** @type {!Object<string, function(!Object, function(!Object): string): !Node>} */
const KIND_VIEWS = {
  top_activations: createTopActivations,
  embeddings: createEmbeddings,
  attributions: createAttributionGrid,
  optimized_images: createOptimizedImages,
};

/**
 * The panel-body builder for one /items answer's kind.
 * @param {string} kind
 * @return {function(!Object, function(!Object): string): !Node}
 */
export function viewFor(kind) {
  return Object.prototype.hasOwnProperty.call(KIND_VIEWS, kind) ? KIND_VIEWS[kind] : Views.createItems;
}
