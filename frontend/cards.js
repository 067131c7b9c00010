// tb-viz frontend: one card per (kind, tag), one panel per run inside it.
//
// A card owns its step slider, the optional second step (compare mode), its curves and its
// panels. Panels fetch only while the card is on screen; a new answer replaces a panel's body only
// once its images have decoded (or after a short timeout), so live updates and slider moves never
// blank a panel, and identical answers leave the DOM alone.

import * as Model from "./model.js";
import {createCard, createError, createPanel, h, placeChildren} from "./views.js";
import {StepSlider} from "./slider.js";
import {Curves} from "./curves.js";
import {createCompareControls, setPanelMode} from "./compare.js";
import {viewFor} from "./kinds.js";

const PRELOAD_TIMEOUT_MS = 2000;
const LOADING_DELAY_MS = 250;

/**
 * What a card needs from the page.
 * @typedef {{
 *   info: function(string, string): ?{kind: string, description: string, steps: !Array<number>},
 *   color: function(string): string,
 *   pickStep: function(!Card, number),
 *   curveTags: function(!Array<string>): !Array<string>,
 *   curveData: function(!Array<string>): !Promise<!Map<string, !Map<string, !Object>>>,
 *   compareMode: function(): string,
 *   setCompareMode: function(string),
 * }} CardContext
 */

const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function newSide() {
  return {seq: 0, signature: null, step: null, failed: false, timer: null, label: ""};
}

export class Card {
  /**
   * @param {string} key
   * @param {string} kind
   * @param {string} tag
   * @param {CardContext} app
   */
  constructor(key, kind, tag, app) {
    this.key = key;
    this.kind = kind;
    this.tag = tag;
    this.app = app;
    const view = createCard(kind, tag);
    this.root = view.root;
    this.description = view.description;
    this.panelsEl = view.panels;
    /** @type {!Array<number>} */
    this.steps = [];
    /** @type {?number} */
    this.step = null;
    this.followLatest = true;
    /** @type {!Array<string>} */
    this.runs = [];
    this.panels = new Map();
    this.visible = false;
    this.comparing = false;
    /** @type {?number} */
    this.stepB = null;
    this.followLatestB = false;
    this.curveSeq = 0;

    this.slider = new StepSlider(`Step of ${tag}`);
    this.slider.onChange = (step) => app.pickStep(this, step);
    this.compare = createCompareControls(tag);
    this.compare.root.hidden = true;
    this.compare.slider.onChange = (step) => this.moveB(step);
    this.compare.mode.addEventListener("change", () => {
      app.setCompareMode(this.compare.mode.value);
      this.applyCompare();
    });
    this.compare.swipe.addEventListener("input", () => this.applySwipe());
    view.controls.append(this.slider.root, this.compare.root);
    this.compareButton = view.compare;
    this.compareButton.addEventListener("click", () => this.toggleCompare());
    this.curves = new Curves(view.curves, (step) => {
      const target = Model.nearestStep(this.steps, step);
      if (target !== null) app.pickStep(this, target);
    });
    this.applySwipe();
  }

  /**
   * Recomputes steps and panels after a data or selection change.
   * @param {!Array<string>} runs the selected runs that have this tag
   * @param {boolean} force refetch every visible panel
   */
  sync(runs, force) {
    this.runs = runs;
    const infos = runs.map((run) => this.app.info(run, this.tag)).filter(Boolean);
    this.description.textContent = infos.map((info) => info.description).find(Boolean) || "";
    this.steps = [...new Set(infos.flatMap((info) => info.steps))].sort((a, b) => a - b);
    const last = this.steps.length ? this.steps[this.steps.length - 1] : null;
    const keep = (step, follow) => (follow ? last : (Model.stepAtOrBefore(this.steps, step) ?? this.steps[0] ?? null));
    this.step = keep(this.step, this.followLatest);
    this.followLatest = this.step === last;
    if (this.comparing) {
      this.stepB = keep(this.stepB, this.followLatestB);
      this.followLatestB = this.stepB === last;
    }
    this.showSteps();

    for (const run of [...this.panels.keys()]) {
      if (!runs.includes(run)) this.panels.delete(run);
    }
    const roots = runs.map((run) => {
      let panel = this.panels.get(run);
      if (!panel) {
        panel = {...createPanel(run, this.app.color(run)), run, sides: {a: newSide(), b: newSide()}, stale: true};
        setPanelMode(panel, this.comparing ? this.compare.mode.value : null);
        this.panels.set(run, panel);
      }
      if (force) panel.stale = true;
      return panel.root;
    });
    placeChildren(this.panelsEl, roots);
    if (this.visible) {
      for (const panel of this.panels.values()) this.refreshPanel(panel, force);
      this.refreshCurves();
    }
  }

  /** Shows or hides the card's work: panels are fetched only while it is on screen. */
  setVisible(visible) {
    if (visible === this.visible) return;
    this.visible = visible;
    if (!visible) return;
    for (const panel of this.panels.values()) this.refreshPanel(panel, false);
    this.refreshCurves();
  }

  /** Moves step A to the nearest available step <= `step` (or the first). */
  move(step) {
    const target = Model.stepAtOrBefore(this.steps, step) ?? this.steps[0];
    if (target === undefined) return;
    this.step = target;
    this.followLatest = target === this.steps[this.steps.length - 1];
    this.showSteps();
    this.curves.mark(target);
    for (const panel of this.panels.values()) this.updateSide(panel, "a", false);
  }

  /** Moves step B (compare mode). */
  moveB(step) {
    const target = Model.stepAtOrBefore(this.steps, step) ?? this.steps[0];
    if (target === undefined) return;
    this.stepB = target;
    this.followLatestB = target === this.steps[this.steps.length - 1];
    this.showSteps();
    for (const panel of this.panels.values()) this.updateSide(panel, "b", false);
  }

  showSteps() {
    this.slider.show(this.steps, this.step);
    if (this.step === null) delete this.root.dataset.step;
    else this.root.dataset.step = String(this.step);
    if (this.comparing) {
      this.compare.slider.show(this.steps, this.stepB);
      this.root.dataset.stepB = String(this.stepB);
    } else {
      delete this.root.dataset.stepB;
    }
  }

  toggleCompare() {
    this.comparing = !this.comparing;
    if (this.comparing) {
      const last = this.steps[this.steps.length - 1];
      this.stepB = this.step === last ? this.steps[0] : last;
      this.followLatestB = this.stepB === last;
      this.compare.mode.value = this.app.compareMode();
    }
    this.showSteps();
    this.applyCompare();
    if (this.comparing && this.visible) {
      for (const panel of this.panels.values()) this.updateSide(panel, "b", false);
    }
  }

  applyCompare() {
    const mode = this.comparing ? this.compare.mode.value : null;
    this.compare.root.hidden = !mode;
    this.compare.swipeLabel.hidden = mode !== "swipe";
    this.compareButton.setAttribute("aria-pressed", String(Boolean(mode)));
    this.compareButton.classList.toggle("tbv-active", Boolean(mode));
    if (mode) this.root.dataset.compare = mode;
    else delete this.root.dataset.compare;
    for (const panel of this.panels.values()) {
      setPanelMode(panel, mode);
      this.showPanelStep(panel);
    }
  }

  applySwipe() {
    this.root.style.setProperty("--tbv-swipe", `${Number(this.compare.swipe.value)}%`);
  }

  /** Re-draws the curves of the card's runs (data cached per scalar tag). */
  refreshCurves() {
    const tags = this.app.curveTags(this.runs);
    const seq = ++this.curveSeq;
    if (!tags.length) {
      this.curves.update([], new Map(), this.runs, this.app.color, this.steps, this.step);
      return;
    }
    this.app.curveData(tags).then((data) => {
      if (seq !== this.curveSeq) return;
      this.curves.update(tags, data, this.runs, this.app.color, this.steps, this.step);
    });
  }

  refreshPanel(panel, force) {
    panel.stale = false;
    this.updateSide(panel, "a", force);
    if (this.comparing) this.updateSide(panel, "b", force);
  }

  /**
   * Shows the run's nearest step <= the side's step. Only the latest request of a side may
   * update it; identical answers leave the DOM (and images) alone.
   */
  updateSide(panel, side, force) {
    if (!this.visible) {
      panel.stale = true;
      return;
    }
    const target = side === "a" ? this.step : this.stepB;
    const body = side === "a" ? panel.body : panel.bodyB;
    const state = panel.sides[side];
    const info = this.app.info(panel.run, this.tag);
    if (!info || target === null) return;
    const step = Model.stepAtOrBefore(info.steps, target);
    const seq = ++state.seq;
    clearTimeout(state.timer);
    if (step === null) {
      this.setSideStep(panel, side, null, `no step ≤ ${target} (first: ${info.steps[0]})`);
      this.replaceBody(panel, body, state, `empty:${target}`,
        h("div", "tbv-muted", `This run has no data at or before step ${target}.`));
      return;
    }
    const label = (shown) => (shown === target ? `step ${shown}` : `step ${shown} (nearest ≤ ${target})`);
    if (!force && state.signature !== null && state.step === step && !state.failed) {
      this.setSideStep(panel, side, step, label(step));
      return;
    }
    state.timer = setTimeout(() => panel.root.classList.add("tbv-loading"), LOADING_DELAY_MS);
    Model.fetchItems(panel.run, this.tag, step).then(
      async (response) => {
        if (seq !== state.seq) return;
        const signature = JSON.stringify(response);
        if (signature !== state.signature) {
          const content = viewFor(response.kind)(response, Model.itemImageUrl);
          if (state.signature !== null && !state.failed) await preload(content);
          if (seq !== state.seq) return;
          this.replaceBody(panel, body, state, signature, content);
        }
        state.failed = false;
        clearTimeout(state.timer);
        panel.root.classList.remove("tbv-loading");
        const shown = Number.isFinite(Number(response.step)) ? Number(response.step) : step;
        this.setSideStep(panel, side, shown, label(shown));
      },
      (error) => {
        if (seq !== state.seq) return;
        clearTimeout(state.timer);
        panel.root.classList.remove("tbv-loading");
        state.failed = true;
        this.replaceBody(panel, body, state, `error:${error.message}`,
          createError(error.message, () => this.updateSide(panel, side, true)));
        this.setSideStep(panel, side, step, `step ${step}`);
      });
  }

  setSideStep(panel, side, step, text) {
    const state = panel.sides[side];
    state.step = step;
    state.label = text;
    const key = side === "a" ? "step" : "stepB";
    if (step === null) delete panel.root.dataset[key];
    else panel.root.dataset[key] = String(step);
    (side === "a" ? panel.body : panel.bodyB).dataset.label = text;
    this.showPanelStep(panel);
  }

  showPanelStep(panel) {
    const {a, b} = panel.sides;
    panel.step.textContent = this.comparing ? `${a.label} vs ${b.label}` : a.label;
    if (a.step === null) delete panel.step.dataset.step;
    else panel.step.dataset.step = String(a.step);
  }

  replaceBody(panel, body, state, signature, content) {
    if (state.signature === signature) return;
    state.signature = signature;
    body.replaceChildren(content);
    for (const img of body.querySelectorAll(".tbv-item img")) {
      if (img.complete && img.naturalWidth === 0 && img.getAttribute("src")) onImageError(img);
      else img.addEventListener("error", () => onImageError(img), {once: true});
    }
  }
}

/** Waits until the images of a new panel body have decoded (at most PRELOAD_TIMEOUT_MS). */
async function preload(content) {
  const images = [...content.querySelectorAll("img")].filter((img) => img.getAttribute("src"));
  if (!images.length) return;
  await Promise.race([Promise.all(images.map((img) => img.decode().catch(() => null))), delay(PRELOAD_TIMEOUT_MS)]);
}

async function onImageError(img) {
  const error = await Model.explainImageError(img.src);
  if (!img.isConnected) return;
  img.replaceWith(createError(`Image failed to load. ${error.message}`));
}
