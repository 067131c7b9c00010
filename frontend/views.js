// tb-viz frontend: small DOM builders. Every string that comes from the data (run,
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
 * A button (type "button") with a class and text.
 * @param {string} className
 * @param {string} text
 * @param {string=} title
 * @return {!HTMLButtonElement}
 */
export function button(className, text, title) {
  const element = h("button", className, text);
  element.type = "button";
  if (title) element.title = title;
  return element;
}

/**
 * Text cut to `max` characters with an ellipsis (tooltips of huge values stay small).
 * @param {string} text
 * @param {number} max
 * @return {string}
 */
export function shorten(text, max) {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/**
 * A collapsible section grouping the cards of one kind (`.tbv-section[data-kind]`).
 * @param {string} kind
 * @return {{root: !HTMLElement, toggle: !HTMLButtonElement, count: !HTMLElement, cards: !HTMLElement}}
 */
export function createSection(kind) {
  const root = h("section", "tbv-section");
  root.dataset.kind = kind;
  const title = h("h2", "tbv-section-title");
  const toggle = button("tbv-section-toggle", "");
  toggle.append(h("span", "tbv-section-arrow", "▾"), h("span", "tbv-section-name", kind.replace(/_/g, " ")));
  const count = h("span", "tbv-section-count tbv-muted");
  toggle.append(count);
  title.append(toggle);
  const cards = h("div", "tbv-cards");
  cards.id = `tbv-section-${kind}`;
  toggle.setAttribute("aria-controls", cards.id);
  root.append(title, cards);
  return {root, toggle, count, cards};
}

/**
 * A card for one tag: header (title, description, compare toggle), a slot for its sliders,
 * and a body with the curves beside the run panels.
 * @param {string} kind
 * @param {string} tag
 * @return {{root: !HTMLElement, description: !HTMLElement, compare: !HTMLButtonElement,
 *     controls: !HTMLElement, curves: !HTMLElement, panels: !HTMLElement}}
 */
export function createCard(kind, tag) {
  const root = h("div", "tbv-card");
  root.dataset.kind = kind;
  root.dataset.tag = tag;
  const header = h("div", "tbv-card-header");
  const title = h("div", "tbv-card-title", tag);
  title.title = tag;
  const description = h("div", "tbv-description");
  const compare = button("tbv-button tbv-compare-toggle", "compare steps",
    "Show two steps of each run side by side or with a swipe");
  compare.setAttribute("aria-pressed", "false");
  header.append(title, description, compare);
  const controls = h("div", "tbv-card-controls");
  const body = h("div", "tbv-card-body");
  const curves = h("div", "tbv-curves");
  curves.hidden = true;
  const panels = h("div", "tbv-panels");
  body.append(curves, panels);
  root.append(header, controls, body);
  return {root, description, compare, controls, curves, panels};
}

/**
 * A panel showing one run's items inside a card: header, then one body per compared step.
 * @param {string} run
 * @param {string} color the run's colour (as in the curves)
 * @return {{root: !HTMLElement, step: !HTMLElement, view: !HTMLElement, body: !HTMLElement,
 *     bodyB: !HTMLElement}}
 */
export function createPanel(run, color) {
  const root = h("div", "tbv-panel");
  root.dataset.run = run;
  const header = h("div", "tbv-panel-header");
  const name = h("span", "tbv-panel-run");
  const swatch = h("span", "tbv-run-swatch");
  swatch.style.background = color;
  name.append(swatch, run);
  name.title = run;
  const step = h("span", "tbv-step");
  header.append(name, step);
  const view = h("div", "tbv-panel-view");
  const body = h("div", "tbv-panel-body");
  body.dataset.side = "a";
  const bodyB = h("div", "tbv-panel-body");
  bodyB.dataset.side = "b";
  bodyB.hidden = true;
  view.append(body, bodyB);
  root.append(header, view);
  return {root, step, view, body, bodyB};
}

/**
 * A visible error message (`.tbv-error`).
 * @param {string} text
 * @param {function()=} onRetry adds a "retry" button when given
 * @return {!HTMLElement}
 */
export function createError(text, onRetry) {
  const element = h("div", "tbv-error", shorten(text, 2000));
  element.setAttribute("role", "alert");
  if (onRetry) {
    const retry = button("tbv-button", "retry");
    retry.addEventListener("click", onRetry);
    element.append(" ", retry);
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
 * Puts exactly `elements`, in order, into `container`, moving only what must move
 * (nodes that stay keep their state: no reload, no flicker).
 * @param {!Element} container
 * @param {!Array<!Element>} elements
 */
export function placeChildren(container, elements) {
  const wanted = new Set(elements);
  for (const node of [...container.childNodes]) {
    if (!wanted.has(node)) node.remove();
  }
  elements.forEach((element, index) => {
    if (container.children[index] !== element) {
      container.insertBefore(element, container.children[index] || null);
    }
  });
}
