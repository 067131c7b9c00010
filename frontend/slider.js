// tb-viz frontend: a step slider usable with the mouse and the keyboard.
//
// A range input over the indices of the available steps (arrows, Page Up/Down, Home/End work
// natively) whose `aria-valuetext` says the step, a number box to type a step (Enter goes to the
// nearest available one), and the current step as text.

import {h} from "./views.js";
import {nearestStep} from "./model.js";

export class StepSlider {
  /**
   * @param {string} label what the slider moves, e.g. "Step of filters/conv1"
   * @param {string=} className extra class of the row
   * @param {string=} rangeClass class of the range input
   */
  constructor(label, className = "", rangeClass = "tbv-slider") {
    this.root = h("div", `tbv-slider-row ${className}`.trim());
    this.range = h("input", rangeClass);
    this.range.type = "range";
    this.range.min = "0";
    this.range.step = "1";
    this.range.setAttribute("aria-label", label);
    // Classes of the default slider: .tbv-slider, .tbv-step-box, .tbv-slider-value; of others
    // derived from rangeClass (e.g. .tbv-slider-b, .tbv-slider-b-box, .tbv-slider-b-value).
    const main = rangeClass === "tbv-slider";
    this.box = h("input", `tbv-stepbox ${main ? "tbv-step-box" : `${rangeClass}-box`}`);
    this.box.type = "number";
    this.box.min = "0";
    this.box.setAttribute("aria-label", `${label}: type a step, Enter goes to the nearest logged step`);
    this.box.title = "Type a step and press Enter";
    this.value = h("span", `tbv-stepvalue ${rangeClass}-value`);
    this.root.append(this.range, this.box, this.value);
    /** @type {!Array<number>} */
    this.steps = [];
    /** @type {?number} */
    this.step = null;
    /** @type {?function(number)} called when the user picks a step */
    this.onChange = null;

    this.range.addEventListener("input", () => this.pick(this.steps[Number(this.range.value)]));
    this.box.addEventListener("change", () => this.pickNearest(Number(this.box.value)));
    this.box.addEventListener("keydown", (event) => {
      if (event.key !== "Enter") return;
      event.preventDefault();
      this.pickNearest(Number(this.box.value));
    });
  }

  /** The user picked `step` (already one of this.steps). */
  pick(step) {
    if (step === undefined || step === null) return;
    this.show(this.steps, step);
    if (this.onChange) this.onChange(step);
  }

  /** The user typed a number: go to the closest available step. */
  pickNearest(value) {
    if (!Number.isFinite(value)) {
      this.show(this.steps, this.step);
      return;
    }
    this.pick(nearestStep(this.steps, value));
  }

  /**
   * Shows `step` among `steps` (ascending) without calling onChange.
   * @param {!Array<number>} steps
   * @param {?number} step
   */
  show(steps, step) {
    this.steps = steps;
    this.step = step;
    const index = Math.max(steps.indexOf(step), 0);
    const n = steps.length;
    this.range.max = String(Math.max(n - 1, 0));
    this.range.value = String(index);
    this.range.disabled = n < 2;
    this.box.disabled = n < 2;
    const text = step === null ? "no step" : `step ${step}`;
    const position = n ? `${index + 1} of ${n} steps` : "no steps";
    this.range.setAttribute("aria-valuetext", `${text} (${position})`);
    if (document.activeElement !== this.box) this.box.value = step === null ? "" : String(step);
    if (n) this.box.max = String(steps[n - 1]);
    this.value.textContent = text;
    if (step === null) delete this.value.dataset.step;
    else this.value.dataset.step = String(step);
    this.value.title = n ? `${position} (${steps[0]}–${steps[n - 1]})` : "";
  }
}
