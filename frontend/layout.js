// tb-viz frontend: the page skeleton. A sticky toolbar (runs, tag filter, density, curves,
// linked/global step, live status), the banner and notice lines, and the content area.

import {button, h} from "./views.js";
import {StepSlider} from "./slider.js";
import {DENSITIES} from "./prefs.js";

/**
 * @return {{root: !HTMLElement, runList: !HTMLElement, allRuns: !HTMLButtonElement,
 *     noRuns: !HTMLButtonElement, filter: !HTMLInputElement, filterStatus: !HTMLElement,
 *     density: !HTMLSelectElement, upscale: !HTMLInputElement, curvesButton: !HTMLButtonElement,
 *     curvesPicker: !HTMLElement, linkSteps: !HTMLInputElement, global: !StepSlider,
 *     live: !HTMLElement, bridge: !HTMLElement, banner: !HTMLElement, hint: !HTMLElement,
 *     content: !HTMLElement}}
 */
export function createLayout() {
  const root = h("div", "tbv-root");
  const toolbar = h("div", "tbv-toolbar");

  const runsBox = h("div", "tbv-runs-box");
  runsBox.append(h("span", "tbv-label", "Runs"));
  const runList = h("div", "tbv-runs");
  const allRuns = button("tbv-button", "all");
  const noRuns = button("tbv-button", "none");
  runsBox.append(runList, allRuns, noRuns);

  const findBox = h("div", "tbv-find");
  const filter = h("input", "tbv-filter");
  filter.type = "search";
  filter.placeholder = "filter tags (regex)";
  filter.setAttribute("aria-label", "Filter tags by regular expression");
  filter.spellcheck = false;
  const filterStatus = h("span", "tbv-filter-status tbv-muted");
  filterStatus.setAttribute("aria-live", "polite");
  findBox.append(filter, filterStatus);

  const densityBox = h("label", "tbv-density-box", "size ");
  const density = h("select", "tbv-density");
  density.setAttribute("aria-label", "Thumbnail size");
  for (const value of DENSITIES) density.append(Object.assign(h("option", "", value), {value}));
  const upscaleLabel = h("label", "tbv-upscale-box");
  const upscale = h("input", "tbv-upscale");
  upscale.type = "checkbox";
  upscaleLabel.append(upscale, " enlarge small images");
  upscaleLabel.title = "Off: images at their own size (never stretched). On: every image fills its thumbnail, pixelated.";
  densityBox.append(density);

  const curvesBox = h("div", "tbv-curves-box");
  const curvesButton = button("tbv-button tbv-curves-button", "curves ▾", "Choose the scalar curves shown beside the cards");
  curvesButton.setAttribute("aria-expanded", "false");
  const curvesPicker = h("div", "tbv-curves-picker");
  curvesPicker.hidden = true;
  curvesPicker.setAttribute("role", "group");
  curvesPicker.setAttribute("aria-label", "Scalar curves shown beside the cards");
  curvesBox.append(curvesButton, curvesPicker);

  const linkLabel = h("label", "tbv-link");
  const linkSteps = h("input");
  linkSteps.type = "checkbox";
  linkSteps.id = "tbv-link-steps";
  linkLabel.append(linkSteps, " link steps");
  linkLabel.title = "One global step slider; moving any slider moves every card to the same (nearest available) step";
  const global = new StepSlider("Global step of every card", "tbv-global", "tbv-global-slider");
  global.root.hidden = true;

  const live = h("span", "tbv-live");
  const bridge = h("span", "tbv-bridge");
  toolbar.append(runsBox, findBox, densityBox, upscaleLabel, curvesBox, linkLabel, global.root, live, bridge);

  const banner = h("div", "tbv-banner");
  const hint = h("div", "tbv-hint");
  hint.hidden = true;
  const content = h("div", "tbv-content", "Loading…");
  root.append(toolbar, banner, hint, content);
  return {root, runList, allRuns, noRuns, filter, filterStatus, density, upscale, curvesButton, curvesPicker,
    linkSteps, global, live, bridge, banner, hint, content};
}

/**
 * One checkbox per run (`.tbv-run-toggle[data-run]`) with the run's colour.
 * @param {!Array<string>} runs
 * @param {function(string): boolean} isSelected
 * @param {function(string): string} color
 * @return {!DocumentFragment}
 */
export function createRunToggles(runs, isSelected, color) {
  const fragment = document.createDocumentFragment();
  if (!runs.length) fragment.append(h("span", "tbv-muted", "no runs with tb_viz data"));
  for (const run of runs) {
    const label = h("label", "tbv-run");
    const input = h("input", "tbv-run-toggle");
    input.type = "checkbox";
    input.dataset.run = run;
    input.checked = isSelected(run);
    input.style.accentColor = color(run);
    label.append(input, h("span", "tbv-run-name", run));
    label.title = run;
    fragment.append(label);
  }
  return fragment;
}

/**
 * The curves picker's content: one checkbox per scalar tag (`.tbv-curve-toggle[data-tag]`).
 * @param {!Array<string>} tags every scalar tag of the selected runs
 * @param {!Array<string>} chosen
 * @param {boolean} isDefault whether `chosen` is the automatic choice
 * @return {{fragment: !DocumentFragment, reset: !HTMLButtonElement}}
 */
export function createCurvePicker(tags, chosen, isDefault) {
  const fragment = document.createDocumentFragment();
  if (!tags.length) fragment.append(h("div", "tbv-muted", "These runs log no scalars."));
  for (const tag of tags) {
    const label = h("label", "tbv-curve-choice");
    const input = h("input", "tbv-curve-toggle");
    input.type = "checkbox";
    input.dataset.tag = tag;
    input.checked = chosen.includes(tag);
    label.append(input, h("span", "", tag));
    fragment.append(label);
  }
  const reset = button("tbv-button tbv-curves-default", "default",
    "Loss and validation curves (chosen automatically)");
  reset.disabled = isDefault;
  fragment.append(reset);
  return {fragment, reset};
}
