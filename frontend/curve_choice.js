// tb-viz frontend: which scalar curves the cards show, and their data.
//
// The choice is the user's (the toolbar's curves picker, remembered) or, until they pick, the
// runs' loss and validation curves. Data is fetched once per scalar tag for every run and
// re-fetched only when a run's latest step of that tag changes (live runs).

import * as Model from "./model.js";
import * as Prefs from "./prefs.js";
import {defaultCurveTags} from "./curves.js";
import {createCurvePicker} from "./layout.js";

export class CurveChoice {
  /**
   * @param {!HTMLButtonElement} button the toolbar's curves button
   * @param {!HTMLElement} picker the popover it opens
   * @param {function()} onChange called after the user changed the choice
   */
  constructor(button, picker, onChange) {
    this.button = button;
    this.picker = picker;
    this.onChange = onChange;
    /** @type {!Map<string, !Map<string, number>>} run -> scalar tag -> latest step */
    this.scalars = new Map();
    this.allTags = [];
    button.addEventListener("click", () => this.setOpen(picker.hidden));
    picker.addEventListener("change", (event) => {
      const input = event.target;
      if (!input.classList.contains("tbv-curve-toggle")) return;
      const chosen = new Set(this.chosen());
      if (input.checked) chosen.add(input.dataset.tag);
      else chosen.delete(input.dataset.tag);
      Prefs.set("curveTags", this.allTags.filter((tag) => chosen.has(tag)));
      this.render();
      this.onChange();
    });
    picker.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        this.setOpen(false);
        button.focus();
      }
    });
  }

  setOpen(open) {
    this.picker.hidden = !open;
    this.button.setAttribute("aria-expanded", String(open));
    if (open) this.render();
  }

  /**
   * New scalar listing from /tags (only the selected runs' tags are offered).
   * @param {!Map<string, !Map<string, number>>} scalars
   * @param {!Array<string>} runs
   */
  setListing(scalars, runs) {
    this.scalars = scalars;
    const tags = new Set();
    for (const run of runs) for (const tag of (scalars.get(run) || new Map()).keys()) tags.add(tag);
    this.allTags = [...tags].sort();
    this.button.hidden = !this.allTags.length;
    if (!this.picker.hidden) this.render();
  }

  /** The tags to draw, in the listing's order. */
  chosen() {
    const saved = Prefs.get("curveTags");
    return saved === null ? defaultCurveTags(this.allTags) : saved.filter((tag) => this.allTags.includes(tag));
  }

  /**
   * The chosen tags that at least one of `runs` logs.
   * @param {!Array<string>} runs
   * @return {!Array<string>}
   */
  tagsFor(runs) {
    return this.chosen().filter((tag) => runs.some((run) => this.scalars.get(run)?.has(tag)));
  }

  /**
   * Curves of `tags` for every run: Map<tag, Map<run, {steps, values}>> (failed tags left out).
   * @param {!Array<string>} tags
   * @return {!Promise<!Map<string, !Map<string, !Object>>>}
   */
  async data(tags) {
    const answers = await Promise.all(tags.map((tag) => {
      const version = JSON.stringify([...this.scalars].map(([run, byTag]) => [run, byTag.get(tag)]));
      return Model.fetchScalars(tag, version).then((curves) => [tag, curves], () => null);
    }));
    return new Map(answers.filter(Boolean));
  }

  render() {
    const saved = Prefs.get("curveTags");
    const {fragment, reset} = createCurvePicker(this.allTags, this.chosen(), saved === null);
    reset.addEventListener("click", () => {
      Prefs.set("curveTags", null);
      this.render();
      this.onChange();
    });
    this.picker.replaceChildren(fragment);
  }
}
