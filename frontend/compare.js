// tb-viz frontend: comparing two steps of each run of a card, side by side or with a swipe.
//
// The card's main slider chooses step A, a second slider step B; every panel then shows both
// bodies. Side by side puts them in two columns; swipe stacks B over A and clips it left of the
// swipe position (`--tbv-swipe` on the card), so dragging the swipe slider uncovers what changed.

import {h} from "./views.js";
import {StepSlider} from "./slider.js";

export const MODES = [["side", "side by side"], ["swipe", "swipe"]];

/**
 * A card's compare row: step B slider, mode and swipe position.
 * @param {string} tag
 * @return {{root: !HTMLElement, slider: !StepSlider, mode: !HTMLSelectElement,
 *     swipe: !HTMLInputElement, swipeLabel: !HTMLElement}}
 */
export function createCompareControls(tag) {
  const root = h("div", "tbv-compare-controls");
  root.append(h("span", "tbv-label", "vs"));
  const slider = new StepSlider(`Second step of ${tag}`, "tbv-compare-b", "tbv-slider-b");
  const mode = h("select", "tbv-compare-mode");
  mode.setAttribute("aria-label", "How to compare the two steps");
  for (const [value, text] of MODES) mode.append(Object.assign(h("option", "", text), {value}));
  const swipe = h("input", "tbv-swipe");
  swipe.type = "range";
  swipe.min = "0";
  swipe.max = "100";
  swipe.value = "50";
  swipe.setAttribute("aria-label", "Swipe position: left of it the first step, right of it the second");
  const swipeLabel = h("label", "tbv-swipe-label", "swipe ");
  swipeLabel.append(swipe);
  root.append(slider.root, mode, swipeLabel);
  return {root, slider, mode, swipe, swipeLabel};
}

/**
 * Shows a panel's two bodies in `mode` ("side" or "swipe"), or only the first when `mode` is null.
 * @param {{view: !HTMLElement, bodyB: !HTMLElement}} panel
 * @param {?string} mode
 */
export function setPanelMode(panel, mode) {
  if (!mode) {
    delete panel.view.dataset.compare;
    panel.bodyB.hidden = true;
    return;
  }
  panel.view.dataset.compare = mode;
  panel.bodyB.hidden = false;
  if (!panel.view.querySelector(".tbv-swipe-line")) panel.view.append(h("div", "tbv-swipe-line"));
}
