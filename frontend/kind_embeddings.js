// Panel view of the `embeddings` kind: the step's 2-D map as a scatter plot (SVG, or a canvas
// past a few thousand points: embeddings_plot.js).
//
// One point per sample, coloured by true label, predicted label or correct/wrong (a toggle that
// is remembered across steps and panels); hovering a point shows the sample's thumbnail, cropped
// from the step's sprite item on a canvas, with its labels; the cluster-quality numbers sit above
// the plot. Moving the card's step slider animates every point from where this run's previous map
// drew it (maps are aligned across steps by the writer, so the motion is the change of the
// representation, not an arbitrary rotation). Data in the manifest `meta` (see FORMAT.md): points,
// indices, labels, predicted, class_names, quality, method, explained_variance, projector_tensor;
// the sprite item carries `tile` (thumbnail side) and `columns`.

import {createError, h} from "./views.js";
import {HEIGHT, WIDTH, createPlot} from "./embeddings_plot.js";

const PAD = 14;
const HOVER_RADIUS = 14; // in viewBox units
const ANIMATION_MS = 450;
const TOOLTIP_PX = 96;
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
  "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const CORRECT = "#2e7d32";
const WRONG = "#d32f2f";
const UNKNOWN = "#9e9e9e";
const MODES = [["label", "true label"], ["predicted", "predicted"], ["correct", "correct / wrong"]];

/** Where each (run, tag)'s points were last drawn: {step, byId: Map<id, [x, y]>}. */
const lastMaps = new Map();
/** The colour mode chosen last, used by every new plot. */
let colorBy = "label";
let groupCounter = 0;

const STYLE = `
.tbv-emb-header { display: flex; flex-wrap: wrap; gap: 2px 14px; font-size: 12px; margin-bottom: 4px; }
.tbv-emb-quality { font-weight: 500; font-variant-numeric: tabular-nums; }
.tbv-emb-info, .tbv-emb-projector { color: var(--tbv-muted, #757575); }
.tbv-emb-controls { display: flex; flex-wrap: wrap; gap: 2px 10px; font-size: 12px; margin-bottom: 4px; }
.tbv-emb-controls label { display: inline-flex; align-items: center; gap: 3px; cursor: pointer; }
.tbv-emb-controls input { margin: 0; accent-color: var(--tbv-accent, #f57c00); }
.tbv-emb-plot { position: relative; }
.tbv-emb-svg, .tbv-emb-canvas { display: block; width: 100%; height: auto; background: #fafafa;
  border: 1px solid var(--tbv-border, #e0e0e0); cursor: crosshair; }
.tbv-emb-point { stroke: rgba(255, 255, 255, 0.8); stroke-width: 0.6; }
.tbv-emb-point.tbv-emb-hover { stroke: #000; stroke-width: 1.6; }
.tbv-emb-tooltip { position: absolute; z-index: 2; pointer-events: none; padding: 4px;
  background: #fff; border: 1px solid #bdbdbd; border-radius: 3px;
  box-shadow: 0 1px 4px rgba(0, 0, 0, 0.25); font-size: 11px; line-height: 1.35; }
.tbv-emb-thumb { display: block; image-rendering: pixelated; margin-bottom: 3px; }
.tbv-emb-legend { display: flex; flex-wrap: wrap; gap: 2px 10px; margin-top: 4px; font-size: 11px; }
.tbv-emb-swatch { display: inline-block; width: 9px; height: 9px; border-radius: 50%; margin-right: 3px; }
`;

function ensureStyles() {
  if (document.getElementById("tbv-emb-style")) return;
  const style = document.createElement("style");
  style.id = "tbv-emb-style";
  style.textContent = STYLE;
  document.head.append(style);
}

const isIndex = (v) => Number.isInteger(v) && v >= 0;

/**
 * Checks the manifest meta; the plot's data, or a message saying what is wrong.
 * @param {!Object} meta
 * @return {(string|{n: number, points: !Array<!Array<number>>, ids: !Array<number>,
 *     labels: ?Array<number>, predicted: ?Array<number>, names: !Array<string>})}
 */
function parseMeta(meta) {
  const points = meta.points;
  if (!Array.isArray(points) || !points.length) return "the step has no points";
  if (!points.every((p) => Array.isArray(p) && p.length === 2 && p.every(Number.isFinite))) {
    return "points must be [x, y] pairs of numbers";
  }
  const n = points.length;
  const column = (value) => (Array.isArray(value) && value.length === n && value.every(isIndex) ? value : null);
  const ids = Array.isArray(meta.indices) && meta.indices.length === n ? meta.indices.map(Number) : points.map((_, i) => i);
  const names = Array.isArray(meta.class_names) ? meta.class_names.map(String) : [];
  return {n, points, ids, labels: column(meta.labels), predicted: column(meta.predicted), names};
}

function className(names, value) {
  return value < names.length ? names[value] : `class ${value}`;
}

function classColor(value) {
  if (value < PALETTE.length) return PALETTE[value];
  return `hsl(${(value * 137.508) % 360}, 60%, 45%)`; // golden-angle hues past the palette
}

function format(value, digits = 3) {
  return typeof value === "number" && Number.isFinite(value) ? value.toFixed(digits) : "n/a";
}

/** Points -> viewBox coordinates: equal scale on both axes, y up, centred. */
function toScreen(points) {
  let [x0, x1, y0, y1] = [Infinity, -Infinity, Infinity, -Infinity];
  for (const [x, y] of points) { // no Math.min(...xs): 100k arguments overflow the stack
    x0 = Math.min(x0, x);
    x1 = Math.max(x1, x);
    y0 = Math.min(y0, y);
    y1 = Math.max(y1, y);
  }
  const scale = Math.min((WIDTH - 2 * PAD) / (x1 - x0 || 1), (HEIGHT - 2 * PAD) / (y1 - y0 || 1));
  const cx = (x0 + x1) / 2;
  const cy = (y0 + y1) / 2;
  return points.map(([x, y]) => [WIDTH / 2 + (x - cx) * scale, HEIGHT / 2 - (y - cy) * scale]);
}

function createHeader(meta, data) {
  const header = h("div", "tbv-emb-header");
  const quality = meta.quality && typeof meta.quality === "object" ? meta.quality : null;
  if (quality) {
    const k = isIndex(quality.knn_k) ? quality.knn_k : 5;
    const text = h("span", "tbv-emb-quality",
      `${k}-NN accuracy ${format(quality.knn_accuracy)} (features), ${format(quality.knn_accuracy_2d)} (map)` +
      ` · silhouette ${format(quality.silhouette)}`);
    text.title = `Leave-one-out ${k}-nearest-neighbour accuracy of the true labels, in the full features ` +
      "and in this 2-D map; mean silhouette of the true classes in the full features " +
      "(1 = tight separate clusters, 0 = overlapping).";
    header.append(text);
  }
  const method = meta.method === "tsne" ? "t-SNE" : "PCA";
  const variance = Array.isArray(meta.explained_variance) && meta.explained_variance.length === 2 ?
    `, ${Math.round(100 * (meta.explained_variance[0] + meta.explained_variance[1]))}% of variance` : "";
  const parts = [`${method}${variance}`, `${data.n} samples`];
  if (isIndex(meta.feature_dim)) parts.push(`${meta.feature_dim}-d features`);
  if (data.labels && data.predicted) {
    const right = data.labels.filter((label, i) => label === data.predicted[i]).length;
    parts.push(`${Math.round((100 * right) / data.n)}% predicted right`);
  }
  header.append(h("span", "tbv-emb-info", parts.join(" · ")));
  if (typeof meta.projector_tensor === "string") {
    header.append(h("span", "tbv-emb-projector", `Projector tab: ${meta.projector_tensor}`));
  }
  return header;
}

/**
 * The panel body for one `embeddings` /items answer.
 * @param {!Object} response the /items JSON answer
 * @param {function(!Object): string} imageUrl item -> absolute image URL
 * @return {!Node}
 */
export function createEmbeddings(response, imageUrl) {
  ensureStyles();
  const meta = response.meta && typeof response.meta === "object" ? response.meta : {};
  const data = parseMeta(meta);
  if (typeof data === "string") return createError(`Cannot draw this embedding: ${data}.`);

  const root = h("div", "tbv-emb");
  root.dataset.points = String(data.n);
  const target = toScreen(data.points);
  const key = JSON.stringify([response.run, response.tag]);
  const previous = lastMaps.get(key);
  lastMaps.set(key, {step: response.step, byId: new Map(data.ids.map((id, i) => [id, target[i]]))});
  const start = previous && previous.step !== response.step ?
    data.ids.map((id, i) => previous.byId.get(id) || target[i]) : target;
  const current = start.map((p) => [...p]);

  // Colour toggle.
  const available = {label: !!data.labels, predicted: !!data.predicted, correct: !!(data.labels && data.predicted)};
  const mode = () => (available[colorBy] ? colorBy : Object.keys(available).find((m) => available[m]) || "label");
  const controls = h("div", "tbv-emb-controls");
  controls.setAttribute("role", "radiogroup");
  controls.append(h("span", "tbv-muted", "colour by"));
  const group = `tbv-emb-color-${++groupCounter}`;
  for (const [value, text] of MODES) {
    const label = h("label");
    const input = h("input");
    input.type = "radio";
    input.name = group;
    input.value = value;
    input.disabled = !available[value];
    input.checked = value === mode();
    input.addEventListener("change", () => {
      colorBy = value;
      paint();
    });
    label.append(input, text);
    controls.append(label);
  }

  // Scatter plot.
  const plot = h("div", "tbv-emb-plot");
  const view = createPlot(data.ids, `2-D map of ${data.n} samples at step ${response.step}`);
  const place = (positions) => {
    positions.forEach(([x, y], i) => {
      current[i][0] = x;
      current[i][1] = y;
    });
    view.place(current);
  };
  place(start);

  const legend = h("div", "tbv-emb-legend");
  const colorOf = (i, by) => {
    if (by === "correct") return data.labels[i] === data.predicted[i] ? CORRECT : WRONG;
    const values = by === "predicted" ? data.predicted : data.labels;
    return values ? classColor(values[i]) : UNKNOWN;
  };
  const legendEntry = (color, text) => {
    const entry = h("span", "tbv-emb-legend-entry");
    const swatch = h("span", "tbv-emb-swatch");
    swatch.style.background = color;
    entry.append(swatch, text);
    return entry;
  };
  function paint() {
    const by = mode();
    root.dataset.colorBy = by;
    view.paint(data.points.map((_, i) => colorOf(i, by)));
    legend.textContent = "";
    if (by === "correct") {
      const right = data.labels.filter((label, i) => label === data.predicted[i]).length;
      legend.append(legendEntry(CORRECT, `correct (${right})`), legendEntry(WRONG, `wrong (${data.n - right})`));
      return;
    }
    const values = by === "predicted" ? data.predicted : data.labels;
    if (!values) return;
    const counts = new Map();
    for (const value of values) counts.set(value, (counts.get(value) || 0) + 1);
    for (const value of [...counts.keys()].sort((a, b) => a - b)) {
      legend.append(legendEntry(classColor(value), `${className(data.names, value)} (${counts.get(value)})`));
    }
  }
  paint();

  // Hover: the nearest point within HOVER_RADIUS shows its thumbnail and labels.
  const tooltip = h("div", "tbv-emb-tooltip");
  tooltip.hidden = true;
  const thumb = h("canvas", "tbv-emb-thumb");
  thumb.width = thumb.height = TOOLTIP_PX;
  const tipText = h("div", "tbv-emb-tiptext");
  tooltip.append(thumb, tipText);
  const spriteItem = (Array.isArray(response.items) ? response.items : []).find(
    (item) => Number(item.tile) > 0 && Number(item.columns) > 0 && item.url);
  const sprite = spriteItem ? new Image() : null;
  let hovered = -1;
  const drawThumb = () => {
    thumb.hidden = !sprite;
    if (!sprite || hovered < 0 || !sprite.complete || !sprite.naturalWidth) return;
    const tile = Number(spriteItem.tile);
    const columns = Number(spriteItem.columns);
    const context = thumb.getContext("2d");
    context.imageSmoothingEnabled = false;
    context.clearRect(0, 0, TOOLTIP_PX, TOOLTIP_PX);
    context.drawImage(sprite, (hovered % columns) * tile, Math.floor(hovered / columns) * tile, tile, tile,
      0, 0, TOOLTIP_PX, TOOLTIP_PX);
    thumb.dataset.sample = String(data.ids[hovered]);
  };
  if (sprite) {
    sprite.addEventListener("load", drawThumb);
    sprite.addEventListener("error", () => plot.append(createError("The thumbnails failed to load.")), {once: true});
    sprite.src = imageUrl(spriteItem);
  }
  const describe = (i) => {
    const lines = [`sample ${data.ids[i]}`];
    if (data.labels) lines.push(`label: ${className(data.names, data.labels[i])}`);
    if (data.predicted) {
      const mark = data.labels ? (data.labels[i] === data.predicted[i] ? " ✓" : " ✗") : "";
      lines.push(`predicted: ${className(data.names, data.predicted[i])}${mark}`);
    }
    return lines;
  };
  const hide = () => {
    if (hovered >= 0) view.highlight(-1);
    hovered = -1;
    tooltip.hidden = true;
  };
  view.element.addEventListener("mousemove", (event) => {
    const point = view.pointer(event);
    let best = -1;
    let bestDistance = HOVER_RADIUS * HOVER_RADIUS;
    current.forEach(([x, y], i) => {
      const distance = (x - point.x) ** 2 + (y - point.y) ** 2;
      if (distance < bestDistance) {
        best = i;
        bestDistance = distance;
      }
    });
    if (best < 0) return hide();
    if (best !== hovered) {
      hide();
      hovered = best;
      view.highlight(best);
      tipText.textContent = "";
      for (const line of describe(best)) tipText.append(h("div", "", line));
      drawThumb();
    }
    tooltip.hidden = false;
    const box = plot.getBoundingClientRect();
    const x = event.clientX - box.left;
    const y = event.clientY - box.top;
    tooltip.style.left = `${x + 14 + tooltip.offsetWidth > box.width ? x - 14 - tooltip.offsetWidth : x + 14}px`;
    tooltip.style.top = `${Math.max(0, y - tooltip.offsetHeight / 2)}px`;
  });
  view.element.addEventListener("mouseleave", hide);

  plot.append(view.element, tooltip);
  root.append(createHeader(meta, data), controls, plot, legend);
  if (start !== target) animate(root, start, target, place);
  return root;
}

/** Moves the points from `from` to `to` (ease in-out); `data-animating` is set meanwhile. */
function animate(root, from, to, place) {
  if (window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)").matches) {
    place(to);
    return;
  }
  root.dataset.animating = "1";
  let finished = false;
  const finish = () => {
    if (finished) return;
    finished = true;
    place(to);
    delete root.dataset.animating;
  };
  let begin = null;
  const frame = (now) => {
    if (finished) return;
    begin = begin === null ? now : begin;
    const t = Math.min(1, (now - begin) / ANIMATION_MS);
    if (t >= 1) return finish();
    const eased = t < 0.5 ? 2 * t * t : 1 - (-2 * t + 2) ** 2 / 2;
    place(from.map(([x, y], i) => [x + (to[i][0] - x) * eased, y + (to[i][1] - y) * eased]));
    requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
  setTimeout(finish, ANIMATION_MS + 250); // animation frames pause in hidden tabs
}
