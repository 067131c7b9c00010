// Panel views per kind. A kind with a view of its own (a heatmap grid, a scatter plot...) has a
// module `kind_<kind>.js` exporting a builder with the signature of Items.createItems, registered
// here under the kind's name; every other kind (and an unknown one) gets the generic image list.

import {createItems} from "./items.js";
import {createFilters} from "./kind_filters.js";
import {createActivationMaps} from "./kind_activation_maps.js";
import {createTopActivations} from "./kind_top_activations.js";
import {createAttributionGrid} from "./kind_attributions.js";
import {createEmbeddings} from "./kind_embeddings.js";
import {createActivationMaximization} from "./kind_activation_maximization.js";
import {createDeepDream} from "./kind_deepdream.js";
import {createNetworkDissection} from "./kind_network_dissection.js";
import {createFeatureInversion} from "./kind_feature_inversion.js";
import {createNeuralStyle} from "./kind_neural_style.js";

/** @type {!Map<string, function(!Object, function(!Object): string): !Node>} */
const KIND_VIEWS = new Map([
  ["filters", createFilters],
  ["activation_maps", createActivationMaps],
  ["top_activations", createTopActivations],
  ["attributions", createAttributionGrid],
  ["embeddings", createEmbeddings],
  ["activation_maximization", createActivationMaximization],
  ["deepdream", createDeepDream],
  ["network_dissection", createNetworkDissection],
  ["feature_inversion", createFeatureInversion],
  ["neural_style", createNeuralStyle],
]);

/**
 * The panel-body builder for one /items answer's kind.
 * @param {string} kind
 * @return {function(!Object, function(!Object): string): !Node}
 */
export function viewFor(kind) {
  return KIND_VIEWS.get(kind) || createItems;
}
