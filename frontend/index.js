// tb-viz frontend entry point. TensorBoard's plugin iframe
// (/data/plugin_entry.html?name=tb_viz) imports this module from
// /data/plugin/tb_viz/static/index.js and calls render().
//
// This module wires the page together: the toolbar's choices, the host bridge, live polling,
// and the sections (one per kind, collapsible) holding the cards (cards.js). Run and tag names
// are data: everything keyed by them is a Map.

import * as Model from "./model.js";
import * as Prefs from "./prefs.js";
import {connectBridge} from "./bridge.js";
import {createEmptyState, createError, createSection, h, placeChildren} from "./views.js";
import {createLayout, createRunToggles} from "./layout.js";
import {Card} from "./cards.js";
import {CurveChoice} from "./curve_choice.js";
import {runColor} from "./curves.js";
import {openLightbox} from "./lightbox.js";
import {startPolling} from "./live.js";
import {TagFilter, updateNotice} from "./finding.js";
// The rest of the module graph, listed here so that the browser fetches every module in one
// round trip instead of discovering them level by level (there is no build step to bundle them).
import "./items.js";
import "./slider.js";
import "./compare.js";
import "./kinds.js";
import "./kind_filters.js";
import "./kind_activation_maps.js";
import "./kind_top_activations.js";
import "./kind_attributions.js";
import "./kind_embeddings.js";
import "./embeddings_plot.js";
import "./kind_activation_maximization.js";
import "./kind_deepdream.js";

const RUNS_CHANGED = "experimental.RunsChanged";
const GET_RUNS = "experimental.GetRuns";
const DATA_RELOADED = "experimental.DataReloaded";
const BRIDGE_TIMEOUT_MS = 2000;
const VISIBLE_MARGIN = "600px 0px";

const state = {
  /** @type {?Model.Listing} */
  listing: null,
  /** Run names TensorBoard knows (bridge), null when unknown. @type {?Set<string>} */
  hostRuns: null,
  /** @type {!Map<string, !Card>} */
  cards: new Map(),
  /** @type {!Map<string, {root: !HTMLElement, toggle: !HTMLElement, count: !HTMLElement, cards: !HTMLElement}>} */
  sections: new Map(),
  tagsSeq: 0,
  runListSignature: null,
  layout: null,
  observer: null,
  /** @type {?CurveChoice} */
  curves: null,
  /** @type {?TagFilter} */
  filter: null,
  colors: new Map(),
};

/** What every card asks of the page (see cards.js CardContext). */
const cardContext = {
  info: (run, tag) => state.listing?.tags.get(run)?.get(tag) || null,
  color: (run) => state.colors.get(run) || runColor(0),
  pickStep,
  curveTags: (runs) => state.curves.tagsFor(runs),
  curveData: (tags) => state.curves.data(tags),
  compareMode: () => Prefs.get("compareMode"),
  setCompareMode: (mode) => Prefs.set("compareMode", mode),
};

/**
 * Builds the UI in document.body, connects to TensorBoard and loads data.
 * Called once by TensorBoard's plugin_entry.html.
 */
export function render() {
  const stylesheet = document.createElement("link");
  stylesheet.rel = "stylesheet";
  stylesheet.href = new URL("./style.css", import.meta.url).href;
  document.head.append(stylesheet);

  const layout = createLayout();
  state.layout = layout;
  document.body.append(layout.root);
  state.curves = new CurveChoice(layout.curvesButton, layout.curvesPicker, () => {
    for (const card of state.cards.values()) if (card.visible) card.refreshCurves();
  });
  state.filter = new TagFilter(layout.filter, layout.filterStatus, () => update(false));
  state.observer = new IntersectionObserver((entries) => {
    for (const entry of entries) {
      const card = state.cards.get(entry.target.dataset.cardKey);
      if (card) card.setVisible(entry.isIntersecting);
    }
  }, {rootMargin: VISIBLE_MARGIN});

  layout.linkSteps.checked = Prefs.get("linkSteps");
  layout.global.root.hidden = !layout.linkSteps.checked;
  layout.linkSteps.addEventListener("change", () => {
    Prefs.set("linkSteps", layout.linkSteps.checked);
    layout.global.root.hidden = !layout.linkSteps.checked;
    updateGlobalSlider();
  });
  layout.global.onChange = (step) => {
    for (const card of state.cards.values()) card.move(step);
  };
  layout.density.value = Prefs.get("density");
  layout.upscale.checked = Prefs.get("upscale");
  const applyDensity = () => {
    layout.root.dataset.density = layout.density.value;
    layout.root.classList.toggle("tbv-enlarged", layout.upscale.checked);
  };
  applyDensity();
  layout.density.addEventListener("change", () => {
    Prefs.set("density", layout.density.value);
    applyDensity();
  });
  layout.upscale.addEventListener("change", () => {
    Prefs.set("upscale", layout.upscale.checked);
    applyDensity();
  });
  layout.runList.addEventListener("change", (event) => {
    const input = event.target;
    if (!input.classList.contains("tbv-run-toggle")) return;
    const deselected = new Set(Prefs.get("deselectedRuns"));
    if (input.checked) deselected.delete(input.dataset.run);
    else deselected.add(input.dataset.run);
    Prefs.set("deselectedRuns", [...deselected]);
    update(false);
  });
  layout.allRuns.addEventListener("click", () => setAllRuns(true));
  layout.noRuns.addEventListener("click", () => setAllRuns(false));
  layout.content.addEventListener("click", (event) => {
    const img = event.target.closest(".tbv-item img");
    if (img) openLightbox(img);
    if (event.target.closest(".tbv-meta")) layout.root.classList.toggle("tbv-meta-open");
  });
  layout.content.addEventListener("keydown", (event) => {
    const img = event.target.closest(".tbv-item img");
    if (img && (event.key === "Enter" || event.key === " ")) {
      event.preventDefault();
      openLightbox(img);
    }
  });

  connectToHost();
  refresh(false);
  startPolling(() => refresh(false), Prefs.get("pollMs"), (status) => {
    layout.live.dataset.state = status;
    layout.live.textContent = status === "live" ? "● live" : "paused";
    layout.live.title = status === "live" ?
      `Checks for new steps every ${Math.round(Prefs.get("pollMs") / 1000)} s while this tab is visible` :
      "Paused while the page is hidden";
  });
}

// ---------------------------------------------------------------- host bridge

function connectToHost() {
  const setBridge = (status, text) => {
    document.documentElement.dataset.tbvBridge = status;
    state.layout.bridge.textContent = text;
  };
  const bridge = connectBridge({
    [RUNS_CHANGED]: (runs) => {
      setBridge("connected", "runs from TensorBoard");
      setHostRuns(runs);
    },
    [DATA_RELOADED]: () => refresh(true),
  });
  if (!bridge) {
    setBridge("unavailable", "standalone page: every run with tb_viz data");
    return;
  }
  setBridge("connecting", "");
  bridge.send(GET_RUNS, null, BRIDGE_TIMEOUT_MS).then(
    (runs) => {
      setBridge("connected", "runs from TensorBoard");
      setHostRuns(runs);
    },
    () => {
      if (document.documentElement.dataset.tbvBridge === "connecting") {
        setBridge("unavailable", "TensorBoard did not answer: every run with tb_viz data");
      }
    });
}

function setHostRuns(runs) {
  // An empty or malformed list (TensorBoard not done loading) filters nothing.
  const valid = Array.isArray(runs) && runs.length && runs.every((r) => typeof r === "string");
  state.hostRuns = valid ? new Set(runs) : null;
  if (state.listing) update(false);
}

function setAllRuns(selected) {
  const deselected = new Set(Prefs.get("deselectedRuns"));
  for (const run of availableRuns()) {
    if (selected) deselected.delete(run);
    else deselected.add(run);
  }
  Prefs.set("deselectedRuns", [...deselected]);
  update(false);
}

// ---------------------------------------------------------------- data flow

/**
 * Fetches /tags and, when anything changed (or `reload`: TensorBoard's reload button, which
 * also forgets cached answers), redraws. Slider positions are kept; cards on the latest step
 * follow new steps.
 */
async function refresh(reload) {
  const seq = ++state.tagsSeq;
  let listing;
  try {
    listing = await Model.fetchListing();
  } catch (error) {
    if (seq !== state.tagsSeq) return;
    showBanner(`Could not load the tb_viz tags. ${error.message}`);
    if (!state.listing) state.layout.content.textContent = "";
    return;
  }
  if (seq !== state.tagsSeq) return;
  showBanner(null);
  if (reload) Model.clearCaches();
  if (!reload && state.listing && state.listing.signature === listing.signature) return;
  state.listing = listing;
  update(reload);
}

function showBanner(text) {
  const banner = state.layout.banner;
  if (!text && !banner.childNodes.length) return;
  banner.textContent = "";
  if (text) banner.append(createError(text, () => refresh(true)));
}

function availableRuns() {
  const runs = [...(state.listing?.tags || new Map())].filter(([, tags]) => tags.size).map(([run]) => run);
  return runs.filter((run) => !state.hostRuns || state.hostRuns.has(run)).sort();
}

/** Rebuilds run toggles, sections, cards and panels from state.listing. */
function update(forceItems) {
  const layout = state.layout;
  const listing = state.listing;
  if (!listing) return;
  const runs = availableRuns();
  runs.forEach((run, index) => state.colors.set(run, runColor(index)));
  const deselected = new Set(Prefs.get("deselectedRuns"));
  const signature = JSON.stringify(runs);
  if (signature !== state.runListSignature) {
    state.runListSignature = signature;
    layout.runList.replaceChildren(createRunToggles(runs, (run) => !deselected.has(run), cardContext.color));
  } else {
    for (const input of layout.runList.querySelectorAll(".tbv-run-toggle")) {
      input.checked = !deselected.has(input.dataset.run);
    }
  }
  const selected = runs.filter((run) => !deselected.has(run));
  state.curves.setListing(listing.scalars, selected);
  updateNotice(layout.hint, listing, selected);

  // (kind, tag) -> runs that have it, in run order.
  const wanted = new Map();
  for (const run of selected) {
    for (const [tag, info] of listing.tags.get(run)) {
      if (!info.steps.length) continue;
      const key = JSON.stringify([info.kind, tag]);
      if (!wanted.has(key)) wanted.set(key, {key, kind: info.kind, tag, runs: []});
      wanted.get(key).runs.push(run);
    }
  }
  const compare = (a, b) => (a < b ? -1 : a > b ? 1 : 0);
  const entries = [...wanted.values()].sort((a, b) => compare(a.kind, b.kind) || compare(a.tag, b.tag));
  for (const [key, card] of [...state.cards]) {
    if (!wanted.has(key)) {
      state.observer.unobserve(card.root);
      state.cards.delete(key);
    }
  }
  const cardsByKind = new Map();
  for (const {key, kind, tag, runs: cardRuns} of entries) {
    let card = state.cards.get(key);
    if (!card) {
      card = new Card(key, kind, tag, cardContext);
      card.root.dataset.cardKey = key;
      state.cards.set(key, card);
      state.observer.observe(card.root);
    }
    card.root.hidden = !state.filter.matches(tag);
    card.sync(cardRuns, forceItems);
    if (!cardsByKind.has(kind)) cardsByKind.set(kind, []);
    cardsByKind.get(kind).push(card);
  }
  const collapsed = new Set(Prefs.get("collapsed"));
  const sectionRoots = [];
  let shownTags = 0;
  for (const [kind, cards] of cardsByKind) {
    let section = state.sections.get(kind);
    if (!section) {
      section = createSection(kind);
      section.toggle.addEventListener("click", () => toggleSection(kind));
      state.sections.set(kind, section);
    }
    const shown = cards.filter((card) => !card.root.hidden).length;
    shownTags += shown;
    section.count.textContent = shown === cards.length ? ` ${cards.length}` : ` ${shown} of ${cards.length}`;
    section.root.hidden = shown === 0;
    const isCollapsed = collapsed.has(kind);
    section.cards.hidden = isCollapsed;
    section.root.classList.toggle("tbv-collapsed", isCollapsed);
    section.toggle.setAttribute("aria-expanded", String(!isCollapsed));
    placeChildren(section.cards, cards.map((card) => card.root));
    sectionRoots.push(section.root);
  }
  for (const kind of [...state.sections.keys()]) {
    if (!cardsByKind.has(kind)) state.sections.delete(kind);
  }
  state.filter.showCount(shownTags, entries.length);
  updateGlobalSlider();

  const hasData = [...listing.tags.values()].some((tags) => tags.size);
  if (!hasData) {
    placeChildren(layout.content, [createEmptyState()]);
  } else if (!sectionRoots.length) {
    const text = runs.length ? "No run selected: tick a run above." : "No run with tb_viz data is known to TensorBoard yet.";
    placeChildren(layout.content, [h("div", "tbv-empty tbv-muted", text)]);
  } else {
    placeChildren(layout.content, sectionRoots);
  }
}

function toggleSection(kind) {
  const collapsed = new Set(Prefs.get("collapsed"));
  if (collapsed.has(kind)) collapsed.delete(kind);
  else collapsed.add(kind);
  Prefs.set("collapsed", [...collapsed]);
  update(false);
}

// ---------------------------------------------------------------- steps

/** A card's slider (or curve click) picked `step`: that card, or every card when linked. */
function pickStep(card, step) {
  if (!Prefs.get("linkSteps")) {
    card.move(step);
    return;
  }
  for (const other of state.cards.values()) other.move(step);
  updateGlobalSlider(step);
}

/** The global slider spans every shown card's steps and follows the latest when it sits there. */
function updateGlobalSlider(step) {
  const slider = state.layout.global;
  if (slider.root.hidden) return;
  const cards = [...state.cards.values()].filter((card) => !card.root.hidden);
  const steps = [...new Set(cards.flatMap((card) => card.steps))].sort((a, b) => a - b);
  const last = steps.length ? steps[steps.length - 1] : null;
  const current = step ?? (slider.step === null || slider.step === slider.steps[slider.steps.length - 1] ? last : slider.step);
  slider.show(steps, Model.stepAtOrBefore(steps, current ?? 0) ?? last);
}
