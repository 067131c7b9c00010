// tb-viz frontend: the runs' scalar curves beside a card's pictures.
//
// One small SVG chart per chosen scalar tag (`.tbv-curves svg`), one line per run of the card in
// the run's colour, and a marker at the card's current step. Hovering reads the values under the
// pointer; a click asks the card to move to the logged step nearest to the clicked one.

import {h, placeChildren} from "./views.js";
import {nearestStep} from "./model.js";

const SVG_NS = "http://www.w3.org/2000/svg";
const WIDTH = 240;
const HEIGHT = 64;
const PAD = 4;
const MAX_DEFAULT = 4;

/** Run colours (TensorBoard-like), by the run's position among the runs with tb_viz data. */
export const PALETTE = ["#ff7043", "#0077bb", "#009988", "#ee3377", "#33bbee", "#cc3311",
  "#7e57c2", "#8d6e63", "#43a047", "#757575"];

/**
 * The colour of the run at `index` (golden-angle hues past the palette).
 * @param {number} index
 * @return {string}
 */
export function runColor(index) {
  return index < PALETTE.length ? PALETTE[index] : `hsl(${(index * 137.508) % 360}, 55%, 45%)`;
}

/**
 * The curves shown when the user chose none: loss curves first, then validation metrics.
 * @param {!Array<string>} tags every scalar tag of the runs
 * @return {!Array<string>}
 */
export function defaultCurveTags(tags) {
  const loss = tags.filter((tag) => /loss/i.test(tag));
  const validation = tags.filter((tag) => !/loss/i.test(tag) && /(^|[\/_. -])(val|valid|validation)([\/_. -]|$)|^val/i.test(tag));
  return [...loss, ...validation].slice(0, MAX_DEFAULT);
}

function svg(name, attributes = {}) {
  const element = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
  return element;
}

function format(value) {
  if (value === null || value === undefined) return "n/a";
  const magnitude = Math.abs(value);
  return magnitude !== 0 && (magnitude < 1e-3 || magnitude >= 1e5) ? value.toExponential(2) : String(Number(value.toPrecision(4)));
}

/** The value of a curve at its logged step nearest to `step` (null when none). */
function valueAt(curve, step) {
  const at = nearestStep(curve.steps, step);
  return at === null ? null : curve.values[curve.steps.indexOf(at)];
}

/** One chart: an SVG with a line per run, the step marker and a hover readout. */
class Chart {
  constructor(tag, onPick) {
    this.tag = tag;
    this.root = h("div", "tbv-curve");
    this.root.dataset.tag = tag;
    const head = h("div", "tbv-curve-head");
    const name = h("span", "tbv-curve-tag", tag);
    name.title = tag;
    this.readout = h("span", "tbv-curve-readout");
    head.append(name, this.readout);
    this.svg = svg("svg", {class: "tbv-curve-svg", viewBox: `0 0 ${WIDTH} ${HEIGHT}`, width: WIDTH, height: HEIGHT});
    this.svg.setAttribute("role", "img");
    this.lines = svg("g", {class: "tbv-curve-lines"});
    this.marker = svg("line", {class: "tbv-curve-marker", y1: 0, y2: HEIGHT});
    this.dots = svg("g", {class: "tbv-curve-dots"});
    this.hover = svg("line", {class: "tbv-curve-hover", y1: 0, y2: HEIGHT, visibility: "hidden"});
    this.svg.append(svg("rect", {class: "tbv-curve-bg", x: 0, y: 0, width: WIDTH, height: HEIGHT}),
      this.lines, this.hover, this.marker, this.dots);
    this.range = h("div", "tbv-curve-range tbv-muted");
    this.root.append(head, this.svg, this.range);
    this.curves = [];
    this.step = null;
    this.domain = [0, 1, 0, 1];

    this.svg.addEventListener("mousemove", (event) => this.showAt(this.stepFromEvent(event)));
    this.svg.addEventListener("mouseleave", () => {
      this.hover.setAttribute("visibility", "hidden");
      this.showReadout(this.step, false);
    });
    this.svg.addEventListener("click", (event) => onPick(this.stepFromEvent(event)));
  }

  x(step) {
    const [x0, x1] = this.domain;
    return PAD + ((step - x0) / (x1 - x0 || 1)) * (WIDTH - 2 * PAD);
  }

  y(value) {
    const [, , y0, y1] = this.domain;
    return HEIGHT - PAD - ((value - y0) / (y1 - y0 || 1)) * (HEIGHT - 2 * PAD);
  }

  stepFromEvent(event) {
    const box = this.svg.getBoundingClientRect();
    const x = ((event.clientX - box.left) / (box.width || WIDTH)) * WIDTH;
    const [x0, x1] = this.domain;
    return x0 + ((x - PAD) / (WIDTH - 2 * PAD)) * (x1 - x0);
  }

  /**
   * @param {!Array<{run: string, color: string, steps: !Array<number>, values: !Array<?number>}>} curves
   * @param {!Array<number>} extraSteps the card's steps (they share the x axis)
   */
  draw(curves, extraSteps) {
    this.curves = curves;
    let [x0, x1, y0, y1] = [Infinity, -Infinity, Infinity, -Infinity];
    for (const step of extraSteps) [x0, x1] = [Math.min(x0, step), Math.max(x1, step)];
    for (const curve of curves) {
      for (let i = 0; i < curve.steps.length; i++) {
        [x0, x1] = [Math.min(x0, curve.steps[i]), Math.max(x1, curve.steps[i])];
        const value = curve.values[i];
        if (value !== null) [y0, y1] = [Math.min(y0, value), Math.max(y1, value)];
      }
    }
    if (!Number.isFinite(x0)) [x0, x1] = [0, 1];
    if (!Number.isFinite(y0)) [y0, y1] = [0, 1];
    const margin = (y1 - y0) * 0.05 || Math.abs(y0) * 0.05 || 1;
    this.domain = [x0, x1 > x0 ? x1 : x0 + 1, y0 - margin, y1 + margin];
    this.svg.dataset.x0 = String(this.domain[0]);
    this.svg.dataset.x1 = String(this.domain[1]);
    this.svg.dataset.pad = String(PAD);

    const paths = curves.map((curve) => {
      let d = "";
      let pen = "M";
      curve.steps.forEach((step, i) => {
        const value = curve.values[i];
        if (value === null) {
          pen = "M";
          return;
        }
        d += `${pen}${this.x(step).toFixed(1)},${this.y(value).toFixed(1)}`;
        pen = "L";
      });
      const path = svg("path", {class: "tbv-curve-line", d: d || "M0,0", stroke: curve.color});
      path.dataset.run = curve.run;
      return path;
    });
    this.lines.replaceChildren(...paths);
    this.svg.setAttribute("aria-label", `${this.tag} of ${curves.map((c) => c.run).join(", ")}`);
    this.range.textContent = curves.length ?
      `${format(y0)} – ${format(y1)} · steps ${this.domain[0]}–${x1}` : "no values in these runs";
    this.mark(this.step);
  }

  /** Moves the marker (and the per-run dots) to the card's step. */
  mark(step) {
    this.step = step;
    const visible = step !== null && step !== undefined;
    this.marker.setAttribute("visibility", visible ? "visible" : "hidden");
    this.dots.replaceChildren();
    if (!visible) return;
    const x = this.x(step);
    this.marker.setAttribute("x1", x.toFixed(1));
    this.marker.setAttribute("x2", x.toFixed(1));
    this.marker.dataset.step = String(step);
    for (const curve of this.curves) {
      const value = valueAt(curve, step);
      if (value === null) continue;
      const dot = svg("circle", {class: "tbv-curve-dot", cx: x.toFixed(1), cy: this.y(value).toFixed(1), r: 2.5, fill: curve.color});
      dot.dataset.run = curve.run;
      this.dots.append(dot);
    }
    this.showReadout(step, false);
  }

  showAt(step) {
    this.hover.setAttribute("x1", this.x(step).toFixed(1));
    this.hover.setAttribute("x2", this.x(step).toFixed(1));
    this.hover.setAttribute("visibility", "visible");
    this.showReadout(step, true);
  }

  showReadout(step, hovering) {
    if (step === null || step === undefined || !this.curves.length) {
      this.readout.textContent = "";
      return;
    }
    const values = this.curves.map((curve) => [curve, valueAt(curve, step)]);
    const text = values.map(([curve, value]) => `${curve.run}: ${format(value)}`);
    const shown = values.length === 1 ? format(values[0][1]) : `${format(values[0][1])} …`;
    this.readout.textContent = `${hovering ? "≈" : "@"}${Math.round(step)} ${shown}`;
    this.readout.title = `step ${Math.round(step)}\n${text.join("\n")}`;
    this.readout.dataset.hover = hovering ? "1" : "0";
    this.root.dataset.readout = text.join("\n");
  }
}

/** The charts of one card (`.tbv-curves`). */
export class Curves {
  /**
   * @param {!HTMLElement} root the card's `.tbv-curves` element
   * @param {function(number)} onPick called with the clicked step (not yet snapped to a logged one)
   */
  constructor(root, onPick) {
    this.root = root;
    this.onPick = onPick;
    /** @type {!Map<string, !Chart>} */
    this.charts = new Map();
  }

  /**
   * Draws `tags` for `runs` from `data` (Map<tag, Map<run, {steps, values}>>), keeping charts
   * that stay (no flicker).
   * @param {!Array<string>} tags
   * @param {!Map<string, !Map<string, {steps: !Array<number>, values: !Array<?number>}>>} data
   * @param {!Array<string>} runs
   * @param {function(string): string} color
   * @param {!Array<number>} cardSteps
   * @param {?number} step
   */
  update(tags, data, runs, color, cardSteps, step) {
    for (const tag of [...this.charts.keys()]) {
      if (!tags.includes(tag)) this.charts.delete(tag);
    }
    const roots = tags.map((tag) => {
      let chart = this.charts.get(tag);
      if (!chart) {
        chart = new Chart(tag, this.onPick);
        this.charts.set(tag, chart);
      }
      const byRun = data.get(tag) || new Map();
      chart.step = step;
      chart.draw(runs.filter((run) => byRun.has(run)).map((run) => ({run, color: color(run), ...byRun.get(run)})), cardSteps);
      return chart.root;
    });
    placeChildren(this.root, roots);
    this.root.hidden = !roots.length;
  }

  /** Moves every chart's marker to `step`. */
  mark(step) {
    for (const chart of this.charts.values()) chart.mark(step);
  }
}
