// tb-viz frontend entry point. TensorBoard's plugin iframe
// (/data/plugin_entry.html?name=tb_viz) imports this module from
// /data/plugin/tb_viz/static/index.js and calls render().

import * as Model from "./model.js";
import * as Views from "./views.js";
import * as Kinds from "./kinds.js";

const RUNS_CHANGED = "experimental.RunsChanged";
const GET_RUNS = "experimental.GetRuns";
const DATA_RELOADED = "experimental.DataReloaded";
const BRIDGE_TIMEOUT_MS = 2000;
const STORAGE_DESELECTED = "tb_viz.deselectedRuns";
const STORAGE_LINK = "tb_viz.linkSteps";

/**
 * @typedef {{root: !HTMLElement, step: !HTMLElement, body: !HTMLElement,
 *     run: string, seq: number, signature: ?string}} Panel
 * @typedef {{key: string, kind: string, tag: string, steps: !Array<number>,
 *     step: number, followLatest: boolean, panels: !Map<string, Panel>,
 *     root: !HTMLElement, description: !HTMLElement, slider: !HTMLInputElement,
 *     sliderValue: !HTMLElement, panelsEl: !HTMLElement}} Card
 */

const state = {
  /** @type {?Object<string, !Object<string, {kind: string, description: string, steps: !Array<number>}>>} */
  tags: null,
  /** Run names TensorBoard knows (bridge), null when unknown. @type {?Set<string>} */
  hostRuns: null,
  /** Runs the user unchecked; new runs start checked. @type {!Set<string>} */
  deselected: new Set(),
  linkSteps: false,
  /** @type {!Map<string, Card>} */
  cards: new Map(),
  /** @type {!Map<string, {root: !HTMLElement, cards: !HTMLElement}>} */
  sections: new Map(),
  tagsSeq: 0,
  runListSignature: null,
  layout: null,
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

  loadPreferences();
  const layout = Views.createLayout();
  state.layout = layout;
  layout.linkSteps.checked = state.linkSteps;
  document.body.append(layout.root);

  layout.linkSteps.addEventListener("change", () => {
    state.linkSteps = layout.linkSteps.checked;
    savePreferences();
  });
  layout.runList.addEventListener("change", (event) => {
    const input = event.target;
    if (!input.classList.contains("tbv-run-toggle")) return;
    if (input.checked) state.deselected.delete(input.dataset.run);
    else state.deselected.add(input.dataset.run);
    savePreferences();
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
}

// ---------------------------------------------------------------- host bridge

function connectToHost() {
  const setBridge = (status, text) => {
    document.documentElement.dataset.tbvBridge = status;
    state.layout.bridge.textContent = text;
  };
  const bridge = Model.connectBridge({
    [RUNS_CHANGED]: (runs) => {
      setBridge("connected", "runs from TensorBoard");
      setHostRuns(runs);
    },
    [DATA_RELOADED]: () => refresh(true),
  });
  if (!bridge) {
    setBridge("unavailable", "standalone page: showing every run with tb_viz data");
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
        setBridge("unavailable", "TensorBoard did not answer: showing every run with tb_viz data");
      }
    });
}

function setHostRuns(runs) {
  // An empty or malformed list (TensorBoard not done loading) filters nothing.
  const valid = Array.isArray(runs) && runs.length && runs.every((r) => typeof r === "string");
  state.hostRuns = valid ? new Set(runs) : null;
  if (state.tags) update(false);
}

// ---------------------------------------------------------------- preferences

function loadPreferences() {
  try {
    const deselected = JSON.parse(window.localStorage.getItem(STORAGE_DESELECTED) || "[]");
    if (Array.isArray(deselected)) state.deselected = new Set(deselected.map(String));
    state.linkSteps = window.localStorage.getItem(STORAGE_LINK) === "1";
  } catch (e) {
    // Storage unavailable or corrupt: defaults.
  }
}

function savePreferences() {
  try {
    window.localStorage.setItem(STORAGE_DESELECTED, JSON.stringify([...state.deselected]));
    window.localStorage.setItem(STORAGE_LINK, state.linkSteps ? "1" : "0");
  } catch (e) {
    // Not persisted; the UI keeps working.
  }
}

function setAllRuns(selected) {
  for (const run of availableRuns()) {
    if (selected) state.deselected.delete(run);
    else state.deselected.add(run);
  }
  savePreferences();
  update(false);
}

// ---------------------------------------------------------------- data flow

/**
 * Fetches /tags and redraws. With `reload`, cached items are forgotten and
 * every visible panel is fetched again; slider positions are kept.
 */
async function refresh(reload) {
  const seq = ++state.tagsSeq;
  if (reload) Model.clearItemCache();
  let tags;
  try {
    tags = await Model.fetchTags();
  } catch (error) {
    if (seq !== state.tagsSeq) return;
    showBanner(`Could not load the tb_viz tags. ${error.message}`);
    if (!state.tags) state.layout.content.textContent = "";
    return;
  }
  if (seq !== state.tagsSeq) return;
  showBanner(null);
  state.tags = tags;
  update(reload);
}

function showBanner(text) {
  const banner = state.layout.banner;
  banner.textContent = "";
  if (text) banner.append(Views.createError(text, () => refresh(true)));
}

function availableRuns() {
  const runs = Object.keys(state.tags || {}).filter((run) => Object.keys(state.tags[run]).length);
  return runs.filter((run) => !state.hostRuns || state.hostRuns.has(run)).sort();
}

/** Rebuilds run toggles, sections, cards and panels from state.tags. */
function update(forceItems) {
  const layout = state.layout;
  const runs = availableRuns();
  const signature = JSON.stringify(runs);
  if (signature !== state.runListSignature) {
    state.runListSignature = signature;
    layout.runList.textContent = "";
    layout.runList.append(Views.createRunToggles(runs, (run) => !state.deselected.has(run)));
  } else {
    for (const input of layout.runList.querySelectorAll(".tbv-run-toggle")) {
      input.checked = !state.deselected.has(input.dataset.run);
    }
  }

  const hasData = Object.values(state.tags).some((tags) => Object.keys(tags).length);
  const selected = runs.filter((run) => !state.deselected.has(run));
  // Only a partial sample of the steps? Say how to get them all.
  layout.hint.hidden = !Object.values(state.tags).some(
    (tags) => Object.values(tags).some((info) => info.steps.length === 10));
  layout.hint.textContent =
    "Seeing only 10 steps of a tag? TensorBoard samples 10 steps per tag by default; " +
    "start it with --samples_per_plugin tb_viz=0 to keep every step.";

  // (kind, tag) -> runs that have it, in run order.
  const wanted = new Map();
  for (const run of selected) {
    for (const [tag, info] of Object.entries(state.tags[run])) {
      if (!info.steps.length) continue;
      const key = JSON.stringify([info.kind, tag]);
      if (!wanted.has(key)) wanted.set(key, {key, kind: info.kind, tag, runs: []});
      wanted.get(key).runs.push(run);
    }
  }
  const entries = [...wanted.values()].sort((a, b) => compare(a.kind, b.kind) || compare(a.tag, b.tag));

  for (const key of [...state.cards.keys()]) {
    if (!wanted.has(key)) state.cards.delete(key);
  }
  const sectionRoots = [];
  const cardsByKind = new Map();
  for (const {key, kind, tag, runs: cardRuns} of entries) {
    let card = state.cards.get(key);
    if (!card) {
      card = newCard(key, kind, tag);
      state.cards.set(key, card);
    }
    syncCard(card, cardRuns, forceItems);
    if (!cardsByKind.has(kind)) cardsByKind.set(kind, []);
    cardsByKind.get(kind).push(card.root);
  }
  for (const [kind, cardRoots] of cardsByKind) {
    let section = state.sections.get(kind);
    if (!section) {
      section = Views.createSection(kind);
      state.sections.set(kind, section);
    }
    placeChildren(section.cards, cardRoots);
    sectionRoots.push(section.root);
  }
  for (const kind of state.sections.keys()) {
    if (!cardsByKind.has(kind)) state.sections.delete(kind);
  }

  if (!hasData) {
    placeChildren(layout.content, [Views.createEmptyState()]);
  } else if (!sectionRoots.length) {
    const text = runs.length ? "No run selected: tick a run above." : "No run with tb_viz data is known to TensorBoard yet.";
    placeChildren(layout.content, [Views.h("div", "tbv-empty tbv-muted", text)]);
  } else {
    placeChildren(layout.content, sectionRoots);
  }
}

function compare(a, b) {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Puts exactly `elements`, in order, into `container`, moving only what must move. */
function placeChildren(container, elements) {
  for (const node of [...container.childNodes]) {
    if (!elements.includes(node)) node.remove();
  }
  elements.forEach((element, index) => {
    if (container.children[index] !== element) {
      container.insertBefore(element, container.children[index] || null);
    }
  });
}

// ---------------------------------------------------------------- cards

function newCard(key, kind, tag) {
  const view = Views.createCard(kind, tag);
  /** @type {Card} */
  const card = {
    key, kind, tag, steps: [], step: 0, followLatest: true, panels: new Map(),
    root: view.root, description: view.description, slider: view.slider,
    sliderValue: view.sliderValue, panelsEl: view.panels,
  };
  view.slider.addEventListener("input", () => {
    const step = card.steps[Number(card.slider.value)];
    if (step === undefined) return;
    if (state.linkSteps) {
      for (const other of state.cards.values()) moveCard(other, step);
    } else {
      moveCard(card, step);
    }
  });
  return card;
}

/** Moves a card to the nearest available step <= `step` (or its first step). */
function moveCard(card, step) {
  const target = Model.stepAtOrBefore(card.steps, step) ?? card.steps[0];
  if (target === undefined) return;
  card.followLatest = target === card.steps[card.steps.length - 1];
  card.step = target;
  showCardStep(card);
  for (const panel of card.panels.values()) updatePanel(card, panel, false);
}

function showCardStep(card) {
  const index = card.steps.indexOf(card.step);
  card.slider.max = String(Math.max(card.steps.length - 1, 0));
  card.slider.value = String(Math.max(index, 0));
  card.slider.disabled = card.steps.length < 2;
  card.root.dataset.step = String(card.step);
  card.sliderValue.dataset.step = String(card.step);
  card.sliderValue.textContent = `step ${card.step}`;
  card.sliderValue.title = `${index + 1} of ${card.steps.length} steps (${card.steps[0]}–${card.steps[card.steps.length - 1]})`;
}

/** Recomputes a card's steps and panels after a data or selection change. */
function syncCard(card, runs, forceItems) {
  const infos = runs.map((run) => state.tags[run][card.tag]);
  card.description.textContent = infos.map((info) => info.description).find(Boolean) || "";
  card.steps = [...new Set(infos.flatMap((info) => info.steps))].sort((a, b) => a - b);
  const last = card.steps[card.steps.length - 1];
  card.step = card.followLatest ? last : (Model.stepAtOrBefore(card.steps, card.step) ?? card.steps[0]);
  card.followLatest = card.step === last;
  showCardStep(card);

  for (const run of card.panels.keys()) {
    if (!runs.includes(run)) card.panels.delete(run);
  }
  const roots = runs.map((run) => {
    let panel = card.panels.get(run);
    if (!panel) {
      panel = {...Views.createPanel(run), run, seq: 0, signature: null};
      card.panels.set(run, panel);
    }
    updatePanel(card, panel, forceItems);
    return panel.root;
  });
  placeChildren(card.panelsEl, roots);
}

// ---------------------------------------------------------------- panels

/**
 * Shows the run's nearest step <= the card's step. Only the latest request of
 * a panel may update it; identical answers leave the DOM (and images) alone.
 */
function updatePanel(card, panel, force) {
  const info = state.tags[panel.run][card.tag];
  const step = Model.stepAtOrBefore(info.steps, card.step);
  const seq = ++panel.seq;
  if (step === null) {
    setPanelStep(panel, null, `no step ≤ ${card.step} (first: ${info.steps[0]})`);
    setPanelBody(panel, `empty:${card.step}`, () =>
      Views.h("div", "tbv-muted", `This run has no data at or before step ${card.step}.`));
    return;
  }
  const label = (shown) => (shown === card.step ? `step ${shown}` : `step ${shown} (nearest ≤ ${card.step})`);
  if (!force && panel.signature !== null && panel.root.dataset.step === String(step) &&
      !panel.root.classList.contains("tbv-panel-failed")) {
    setPanelStep(panel, step, label(step));
    return;
  }
  panel.root.classList.add("tbv-loading");
  Model.fetchItems(panel.run, card.tag, step).then(
    (response) => {
      if (seq !== panel.seq) return;
      const shown = Number.isFinite(Number(response.step)) ? Number(response.step) : step;
      setPanelStep(panel, shown, label(shown));
      panel.root.classList.remove("tbv-panel-failed");
      setPanelBody(panel, JSON.stringify(response), () =>
        Kinds.viewFor(response.kind)(response, Model.itemImageUrl));
    },
    (error) => {
      if (seq !== panel.seq) return;
      setPanelStep(panel, step, `step ${step}`);
      panel.root.classList.add("tbv-panel-failed");
      setPanelBody(panel, `error:${error.message}`, () =>
        Views.createError(error.message, () => updatePanel(card, panel, true)));
    });
}

function setPanelStep(panel, step, text) {
  panel.root.classList.remove("tbv-loading");
  if (step === null) delete panel.root.dataset.step;
  else panel.root.dataset.step = String(step);
  panel.step.textContent = text;
  if (step === null) delete panel.step.dataset.step;
  else panel.step.dataset.step = String(step);
}

function setPanelBody(panel, signature, build) {
  if (panel.signature === signature) return;
  panel.signature = signature;
  panel.body.textContent = "";
  panel.body.append(build());
  for (const img of panel.body.querySelectorAll(".tbv-item img")) {
    img.addEventListener("error", () => onImageError(img), {once: true});
  }
}

async function onImageError(img) {
  const error = await Model.explainImageError(img.src);
  if (!img.isConnected) return;
  const message = Views.createError(`Image failed to load. ${error.message}`);
  img.replaceWith(message);
}

// ---------------------------------------------------------------- lightbox

function openLightbox(img) {
  const previousFocus = document.activeElement;
  const box = Views.createLightbox(img.currentSrc || img.src, img.alt);
  const close = () => {
    box.remove();
    document.removeEventListener("keydown", onKey, true);
    if (previousFocus && previousFocus.focus) previousFocus.focus();
  };
  const onKey = (event) => {
    if (event.key === "Escape") {
      event.preventDefault();
      close();
    }
  };
  box.addEventListener("click", close);
  document.addEventListener("keydown", onKey, true);
  document.body.append(box);
  box.focus();
}
