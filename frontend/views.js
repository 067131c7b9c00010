// tb-viz frontend: DOM builders. Every string that comes from the data (run,
// tag, caption, meta, server messages) goes through textContent or an
// attribute value, never through innerHTML.

/**
 * Creates an element with an optional class name and text.
 * @param {string} tagName
 * @param {string=} className
 * @param {string=} text
 * @return {!HTMLElement}
 */
export function h(tagName, className, text) {
  const element = document.createElement(tagName);
  if (className) element.className = className;
  if (text !== undefined) element.textContent = text;
  return element;
}

/**
 * The page skeleton: toolbar (runs, link toggle, bridge status), error banner
 * area, hint line and content area.
 * @return {{root: !HTMLElement, runList: !HTMLElement, allRuns: !HTMLButtonElement,
 *     noRuns: !HTMLButtonElement, linkSteps: !HTMLInputElement, bridge: !HTMLElement,
 *     banner: !HTMLElement, hint: !HTMLElement, content: !HTMLElement}}
 */
export function createLayout() {
  const root = h("div", "tbv-root");
  const toolbar = h("div", "tbv-toolbar");

  const runsBox = h("div", "tbv-runs-box");
  runsBox.append(h("span", "tbv-label", "Runs"));
  const runList = h("div", "tbv-runs");
  const allRuns = h("button", "tbv-button", "all");
  const noRuns = h("button", "tbv-button", "none");
  allRuns.type = noRuns.type = "button";
  runsBox.append(runList, allRuns, noRuns);

  const linkLabel = h("label", "tbv-link");
  const linkSteps = h("input");
  linkSteps.type = "checkbox";
  linkSteps.id = "tbv-link-steps";
  linkLabel.append(linkSteps, " Link steps");
  linkLabel.title = "Moving any slider moves every card to the same (nearest available) step";

  const bridge = h("span", "tbv-bridge");
  toolbar.append(runsBox, linkLabel, bridge);

  const banner = h("div", "tbv-banner");
  const hint = h("div", "tbv-hint");
  hint.hidden = true;
  const content = h("div", "tbv-content", "Loading…");
  root.append(toolbar, banner, hint, content);
  return {root, runList, allRuns, noRuns, linkSteps, bridge, banner, hint, content};
}

/**
 * One checkbox per run (`.tbv-run-toggle[data-run]`).
 * @param {!Array<string>} runs
 * @param {function(string): boolean} isSelected
 * @return {!DocumentFragment}
 */
export function createRunToggles(runs, isSelected) {
  const fragment = document.createDocumentFragment();
  if (!runs.length) fragment.append(h("span", "tbv-muted", "no runs with tb_viz data"));
  for (const run of runs) {
    const label = h("label", "tbv-run");
    const input = h("input", "tbv-run-toggle");
    input.type = "checkbox";
    input.dataset.run = run;
    input.checked = isSelected(run);
    label.append(input, h("span", "tbv-run-name", run));
    label.title = run;
    fragment.append(label);
  }
  return fragment;
}

/**
 * A section grouping the cards of one kind.
 * @param {string} kind
 * @return {{root: !HTMLElement, cards: !HTMLElement}}
 */
export function createSection(kind) {
  const root = h("section", "tbv-section");
  root.dataset.kind = kind;
  const cards = h("div", "tbv-cards");
  root.append(h("h2", "tbv-section-title", kind), cards);
  return {root, cards};
}

/**
 * A card for one tag: title, description, step slider, panel row.
 * @param {string} kind
 * @param {string} tag
 * @return {{root: !HTMLElement, description: !HTMLElement, slider: !HTMLInputElement,
 *     sliderValue: !HTMLElement, panels: !HTMLElement}}
 */
export function createCard(kind, tag) {
  const root = h("div", "tbv-card");
  root.dataset.kind = kind;
  root.dataset.tag = tag;
  const header = h("div", "tbv-card-header");
  const title = h("div", "tbv-card-title", tag);
  title.title = tag;
  const description = h("div", "tbv-description");
  header.append(title, description);

  const sliderRow = h("div", "tbv-slider-row");
  const slider = h("input", "tbv-slider");
  slider.type = "range";
  slider.min = "0";
  slider.step = "1";
  slider.setAttribute("aria-label", `Step of ${tag}`);
  const sliderValue = h("span", "tbv-slider-value");
  sliderRow.append(slider, sliderValue);

  const panels = h("div", "tbv-panels");
  root.append(header, sliderRow, panels);
  return {root, description, slider, sliderValue, panels};
}

/**
 * A panel showing one run's items inside a card.
 * @param {string} run
 * @return {{root: !HTMLElement, step: !HTMLElement, body: !HTMLElement}}
 */
export function createPanel(run) {
  const root = h("div", "tbv-panel");
  root.dataset.run = run;
  const header = h("div", "tbv-panel-header");
  const name = h("span", "tbv-panel-run", run);
  name.title = run;
  const step = h("span", "tbv-step");
  header.append(name, step);
  const body = h("div", "tbv-panel-body");
  root.append(header, body);
  return {root, step, body};
}

function formatValue(value, round) {
  if (round && typeof value === "number" && !Number.isInteger(value)) {
    return String(Number(value.toPrecision(4)));
  }
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return text === undefined ? String(value) : text;
}

function shorten(text, max) {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/**
 * The contents of a panel body for one /items answer: compact meta line and
 * one figure per item (`.tbv-item img` + caption).
 * @param {!Object} response the /items JSON answer
 * @param {function(!Object): string} imageUrl item -> absolute image URL
 * @return {!DocumentFragment}
 */
export function createItems(response, imageUrl) {
  const fragment = document.createDocumentFragment();
  const meta = response.meta && typeof response.meta === "object" ? response.meta : {};
  const metaEntries = Object.entries(meta);
  if (metaEntries.length) {
    // One clipped line (click expands every meta line); the tooltip has full values.
    const line = h("div", "tbv-meta");
    line.title = metaEntries.map(([key, value]) => `${key}: ${formatValue(value, false)}`).join("\n");
    for (const [key, value] of metaEntries) {
      line.append(h("span", "tbv-meta-entry", shorten(`${key}: ${formatValue(value, true)}`, 60)));
    }
    fragment.append(line);
  }
  const items = Array.isArray(response.items) ? response.items : [];
  if (!items.length) {
    fragment.append(h("div", "tbv-muted", "no items at this step"));
    return fragment;
  }
  const list = h("div", "tbv-items");
  for (const item of items) {
    const figure = h("figure", "tbv-item");
    const caption = item.caption === undefined || item.caption === null ? "" : String(item.caption);
    const img = h("img");
    img.alt = caption || String(response.tag || "");
    img.decoding = "async";
    img.loading = "lazy";
    img.tabIndex = 0;
    const width = Number(item.width);
    const height = Number(item.height);
    if (width > 0 && height > 0) {
      img.width = width;
      img.height = height;
    }
    const extra = Object.entries(item)
      .filter(([key]) => !["url", "caption", "width", "height"].includes(key))
      .map(([key, value]) => `${key}: ${formatValue(value)}`);
    img.title = [caption, ...extra].filter(Boolean).join("\n") || "click to enlarge";
    img.src = imageUrl(item);
    figure.append(img);
    if (caption) figure.append(h("figcaption", "tbv-caption", caption));
    list.append(figure);
  }
  fragment.append(list);
  return fragment;
}

/**
 * A visible error message (`.tbv-error`).
 * @param {string} text
 * @param {function()=} onRetry adds a "retry" button when given
 * @return {!HTMLElement}
 */
export function createError(text, onRetry) {
  const element = h("div", "tbv-error", text);
  element.setAttribute("role", "alert");
  if (onRetry) {
    const button = h("button", "tbv-button", "retry");
    button.type = "button";
    button.addEventListener("click", onRetry);
    element.append(" ", button);
  }
  return element;
}

/**
 * What to show when no run has tb_viz data.
 * @return {!HTMLElement}
 */
export function createEmptyState() {
  const root = h("div", "tbv-empty");
  root.append(h("h3", "", "No tb_viz data found."));
  const how = h("p");
  how.append(
    "To log some, add a tb-viz callback such as ",
    h("code", "", "tb_viz_plugin.callbacks.FilterGrid"),
    " to your Lightning Trainer's callbacks (with a TensorBoardLogger).");
  const samples = h("p");
  samples.append(
    "TensorBoard keeps only 10 steps per tag by default: start it with ",
    h("code", "", "--samples_per_plugin tb_viz=0"),
    " to keep every step.");
  root.append(how, samples);
  return root;
}

/**
 * Full-window overlay with one image at full size (`.tbv-lightbox`).
 * @param {string} src
 * @param {string} caption
 * @return {!HTMLElement}
 */
export function createLightbox(src, caption) {
  const root = h("div", "tbv-lightbox");
  root.tabIndex = -1;
  root.setAttribute("role", "dialog");
  root.setAttribute("aria-label", caption || "image");
  const img = h("img");
  img.src = src;
  img.alt = caption;
  root.append(img);
  if (caption) root.append(h("div", "tbv-lightbox-caption", caption));
  root.append(h("div", "tbv-lightbox-hint", "click or press Escape to close"));
  return root;
}
