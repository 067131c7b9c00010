// Panel view of the `network_dissection` kind: which units of a layer detect which concepts.
//
// The manifest meta holds the whole unit table (`units`: unit, best concept, label or null, IoU,
// item index of its picture), the detector count per concept (`concepts`, with categories) and
// the counts of every logged step so far (`history`). The view shows, top to bottom: one summary
// line; a bar chart of detectors per concept grouped by category; the number of detectors and of
// distinct concepts across steps as two curves (marker at this step); and the unit table,
// sortable by unit, concept or IoU, each row with the unit's top images masked by its thresholded
// activation (the items; `.tbv-item img` keeps the lightbox and tooltips).

import {createImage} from "./items.js";
import {button, h} from "./views.js";

const SVG_NS = "http://www.w3.org/2000/svg";
const CURVE_WIDTH = 260;
const CURVE_HEIGHT = 70;
const PAD = 6;

const isObject = (value) => value !== null && typeof value === "object" && !Array.isArray(value);
const number = (value) => (typeof value === "number" && Number.isFinite(value) ? value : null);

function svg(name, attributes = {}) {
  const element = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
  return element;
}

/** "X of Y units are detectors covering Z concepts (IoU ≥ t)". */
function createSummary(meta) {
  const detectors = Number.isInteger(meta.detectors) ? meta.detectors : 0;
  const total = Number.isInteger(meta.units_total) ? meta.units_total : "?";
  const covered = Number.isInteger(meta.concepts_covered) ? meta.concepts_covered : 0;
  const threshold = number(meta.iou_threshold);
  const text = `${detectors} of ${total} units are detectors covering ${covered} concept${covered === 1 ? "" : "s"}` +
    (threshold === null ? "" : ` (IoU ≥ ${threshold})`);
  const line = h("div", "tbv-kind-summary tbv-dissect-summary", text);
  const details = [];
  if (typeof meta.layer === "string") details.push(meta.layer);
  if (Number.isInteger(meta.images)) details.push(`${meta.images} images`);
  if (number(meta.quantile) !== null) details.push(`top ${meta.quantile * 100}% of each unit's activations`);
  line.title = details.join(" · ");
  return line;
}

/** Bars of detectors per concept (concepts with at least one), grouped by category. */
function createBars(meta) {
  const box = h("div", "tbv-dissect-bars");
  const concepts = (Array.isArray(meta.concepts) ? meta.concepts : []).filter((c) => isObject(c) && c.detectors > 0);
  if (!concepts.length) {
    box.append(h("div", "tbv-muted", "no detectors at this step"));
    return box;
  }
  const most = Math.max(...concepts.map((c) => c.detectors));
  const categories = [...new Set(concepts.map((c) => String(c.category)))];
  for (const category of categories) {
    const group = h("div", "tbv-dissect-group");
    group.dataset.category = category;
    group.append(h("div", "tbv-dissect-category", category));
    for (const concept of concepts.filter((c) => String(c.category) === category)) {
      const row = h("div", "tbv-dissect-bar");
      row.dataset.concept = String(concept.name);
      const bar = h("span", "tbv-dissect-bar-fill");
      bar.style.width = `${Math.max(4, Math.round(120 * concept.detectors / most))}px`;
      row.append(h("span", "tbv-dissect-bar-name", String(concept.name)), bar,
        h("span", "tbv-dissect-bar-count", String(concept.detectors)));
      row.title = `${concept.detectors} unit${concept.detectors === 1 ? "" : "s"} detect ${concept.name}`;
      group.append(row);
    }
    box.append(group);
  }
  return box;
}

/** Detectors and distinct concepts per logged step, as two lines; a marker at `step`. */
function createHistory(meta, step) {
  const points = (Array.isArray(meta.history) ? meta.history : [])
    .filter((p) => isObject(p) && Number.isInteger(p.step)).sort((a, b) => a.step - b.step);
  const box = h("div", "tbv-dissect-history");
  box.dataset.points = String(points.length);
  const legend = h("div", "tbv-muted", points.length > 1 ? "across steps: — detectors · - - concepts" :
    "across steps: one logged step so far");
  box.append(legend);
  if (!points.length) return box;
  const chart = svg("svg", {width: CURVE_WIDTH, height: CURVE_HEIGHT, viewBox: `0 0 ${CURVE_WIDTH} ${CURVE_HEIGHT}`});
  const first = points[0].step;
  const last = points[points.length - 1].step;
  const top = Math.max(1, ...points.map((p) => Math.max(p.detectors || 0, p.concepts || 0)));
  const x = (s) => PAD + (last === first ? (CURVE_WIDTH - 2 * PAD) / 2 : (s - first) * (CURVE_WIDTH - 2 * PAD) / (last - first));
  const y = (v) => CURVE_HEIGHT - PAD - (v || 0) * (CURVE_HEIGHT - 2 * PAD) / top;
  for (const [key, dash, cls] of [["detectors", "", "tbv-dissect-detectors"], ["concepts", "4 3", "tbv-dissect-concepts"]]) {
    const line = svg("polyline", {
      points: points.map((p) => `${x(p.step)},${y(p[key])}`).join(" "), fill: "none",
      stroke: "currentColor", "stroke-width": 1.5, "stroke-dasharray": dash, class: cls,
    });
    const title = svg("title");
    title.textContent = points.map((p) => `step ${p.step}: ${p[key]} ${key}`).join("\n");
    line.append(title);
    chart.append(line);
    for (const p of points) chart.append(svg("circle", {cx: x(p.step), cy: y(p[key]), r: 2, fill: "currentColor"}));
  }
  if (Number.isInteger(step)) {
    chart.append(svg("line", {x1: x(step), x2: x(step), y1: PAD / 2, y2: CURVE_HEIGHT - PAD / 2,
      stroke: "#ff7043", "stroke-width": 1, class: "tbv-dissect-marker"}));
  }
  box.append(chart);
  return box;
}

const SORTS = {
  unit: (a, b) => a.unit - b.unit,
  concept: (a, b) => String(a.label ?? "\uffff").localeCompare(String(b.label ?? "\uffff")) || (b.iou ?? 0) - (a.iou ?? 0),
  iou: (a, b) => (b.iou ?? -1) - (a.iou ?? -1) || a.unit - b.unit,
};

/** The unit table, sortable by unit, concept or IoU (click a header; again to reverse). */
function createTable(meta, items, imageUrl, tag) {
  const units = (Array.isArray(meta.units) ? meta.units : []).filter((u) => isObject(u) && Number.isInteger(u.unit));
  const box = h("div", "tbv-dissect-units");
  const table = h("table", "tbv-dissect-table");
  const head = h("tr");
  const body = h("tbody");
  let order = {key: "iou", reverse: false};
  const render = () => {
    const rows = [...units].sort(SORTS[order.key]);
    if (order.reverse) rows.reverse();
    body.replaceChildren(...rows.map((unit) => {
      const row = h("tr", unit.label ? "tbv-dissect-detector" : "tbv-dissect-other");
      row.dataset.unit = String(unit.unit);
      const concept = h("td", "tbv-dissect-concept", unit.label ?? `(${unit.concept ?? "none"})`);
      if (!unit.label) concept.classList.add("tbv-muted");
      const picture = h("td", "tbv-dissect-picture");
      const item = Number.isInteger(unit.item) ? items[unit.item] : null;
      if (isObject(item)) {
        const figure = h("figure", "tbv-item");
        figure.append(createImage(item, imageUrl(item), String(tag || "")));
        picture.append(figure);
      }
      row.append(h("td", "tbv-dissect-unit", String(unit.unit)), concept,
        h("td", "tbv-dissect-iou", number(unit.iou) === null ? "n/a" : unit.iou.toFixed(3)), picture);
      return row;
    }));
    for (const cell of head.children) {
      cell.setAttribute("aria-sort", cell.dataset.key === order.key ? (order.reverse ? "ascending" : "descending") : "none");
    }
  };
  for (const [key, label] of [["unit", "unit"], ["concept", "concept"], ["iou", "IoU"], [null, "top images"]]) {
    const cell = h("th");
    if (key) {
      cell.dataset.key = key;
      const sort = button("tbv-dissect-sort", label, `sort by ${label}`);
      sort.addEventListener("click", () => {
        order = {key, reverse: order.key === key ? !order.reverse : false};
        render();
      });
      cell.append(sort);
    } else {
      cell.textContent = label;
    }
    head.append(cell);
  }
  table.append(h("thead"), body);
  table.firstChild.append(head);
  render();
  box.append(table);
  return box;
}

/**
 * The panel body for one /items answer of kind `network_dissection`.
 * @param {!Object} response the /items JSON answer
 * @param {function(!Object): string} imageUrl item -> absolute image URL
 * @return {!DocumentFragment}
 */
export function createNetworkDissection(response, imageUrl) {
  const fragment = document.createDocumentFragment();
  const meta = isObject(response.meta) ? response.meta : {};
  const items = Array.isArray(response.items) ? response.items : [];
  const view = h("div", "tbv-dissect");
  const charts = h("div", "tbv-dissect-charts");
  charts.append(createBars(meta), createHistory(meta, response.step));
  view.append(createSummary(meta), charts, createTable(meta, items, imageUrl, response.tag));
  fragment.append(view);
  return fragment;
}
