// tb-viz frontend: finding things on a page of many runs and tags. The tag filter (a regular
// expression, remembered) and the notice saying when TensorBoard sampled the steps away.

import * as Prefs from "./prefs.js";

const DEBOUNCE_MS = 150;

export class TagFilter {
  /**
   * @param {!HTMLInputElement} input
   * @param {!HTMLElement} status where "3 of 8 tags" or the regex error goes
   * @param {function()} onChange called after the filter changed
   */
  constructor(input, status, onChange) {
    this.input = input;
    this.status = status;
    this.onChange = onChange;
    this.error = "";
    input.value = Prefs.get("tagFilter");
    this.compile(input.value);
    let timer = null;
    input.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(() => this.apply(), DEBOUNCE_MS);
    });
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        clearTimeout(timer);
        this.apply();
      } else if (event.key === "Escape" && input.value) {
        input.value = "";
        clearTimeout(timer);
        this.apply();
      }
    });
  }

  apply() {
    Prefs.set("tagFilter", this.input.value.slice(0, 1000));
    this.compile(this.input.value);
    this.onChange();
  }

  compile(text) {
    this.regex = null;
    this.error = "";
    if (text) {
      try {
        this.regex = new RegExp(text, "i");
      } catch (e) {
        this.error = "invalid regex: showing every tag";
      }
    }
    this.input.setAttribute("aria-invalid", String(Boolean(this.error)));
  }

  /**
   * @param {string} tag
   * @return {boolean}
   */
  matches(tag) {
    return !this.regex || this.regex.test(tag);
  }

  /** Says how many tags the filter lets through (or why it lets everything through). */
  showCount(shown, total) {
    this.status.textContent = this.error || (this.regex ? `${shown} of ${total} tags` : "");
  }
}

/**
 * Shows, when TensorBoard kept only some steps of some tags, how many and how to get them all.
 * Driven by what the server reports: its per-tag limit (`--samples_per_plugin tb_viz=N`,
 * TensorBoard's default 10) and the tags that reached it.
 * @param {!HTMLElement} hint
 * @param {{tags: !Map<string, !Map<string, {steps: !Array<number>}>>, samplesPerTag: ?number}} listing
 * @param {!Array<string>} runs the selected runs
 */
export function updateNotice(hint, listing, runs) {
  const limit = listing.samplesPerTag;
  let full = 0;
  let total = 0;
  for (const run of runs) {
    for (const info of (listing.tags.get(run) || new Map()).values()) {
      total += 1;
      if (limit !== null && info.steps.length >= limit) full += 1;
    }
  }
  hint.hidden = !full;
  hint.dataset.sampled = String(full);
  hint.textContent = full ?
    `Showing ${limit} steps of ${full} of ${total} run/tag series: TensorBoard keeps at most ${limit} ` +
    `steps per tag of this tab (picked at random, the latest always kept), so earlier steps may be missing. ` +
    "Start TensorBoard with --samples_per_plugin tb_viz=0 to keep every step." : "";
}
