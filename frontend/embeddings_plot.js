// tb-viz frontend: the scatter plot under the embeddings view, in two renderers with one
// interface. Up to SVG_LIMIT points: one SVG circle per sample (`circle.tbv-emb-point`,
// hover-friendly, crisp). Beyond: one canvas, points drawn in batches of one colour, so 100k
// samples still draw (and animate) in a few milliseconds per frame.

const SVG_NS = "http://www.w3.org/2000/svg";
export const WIDTH = 480;
export const HEIGHT = 360;
export const SVG_LIMIT = 4000;
const RADIUS = 3.2;

/**
 * A plot for `ids.length` points (SVG or canvas by size).
 * @param {!Array<number>} ids sample ids (the SVG circles' data-index)
 * @param {string} label accessible description
 * @return {!SvgPlot|!CanvasPlot}
 */
export function createPlot(ids, label) {
  return ids.length <= SVG_LIMIT ? new SvgPlot(ids, label) : new CanvasPlot(ids.length, label);
}

/** Viewbox coordinates of a pointer event over `element` (which shows WIDTH x HEIGHT units). */
function toViewBox(element, event) {
  const box = element.getBoundingClientRect();
  return {x: ((event.clientX - box.left) / (box.width || WIDTH)) * WIDTH,
    y: ((event.clientY - box.top) / (box.height || HEIGHT)) * HEIGHT};
}

class SvgPlot {
  constructor(ids, label) {
    this.element = document.createElementNS(SVG_NS, "svg");
    this.element.setAttribute("class", "tbv-emb-svg");
    this.element.setAttribute("viewBox", `0 0 ${WIDTH} ${HEIGHT}`);
    this.element.setAttribute("role", "img");
    this.element.setAttribute("aria-label", label);
    this.circles = ids.map((id) => {
      const circle = document.createElementNS(SVG_NS, "circle");
      circle.setAttribute("class", "tbv-emb-point");
      circle.setAttribute("r", String(RADIUS));
      circle.dataset.index = String(id);
      this.element.append(circle);
      return circle;
    });
    this.hovered = -1;
  }

  place(positions) {
    positions.forEach(([x, y], i) => {
      this.circles[i].setAttribute("cx", x.toFixed(2));
      this.circles[i].setAttribute("cy", y.toFixed(2));
    });
  }

  paint(colors) {
    this.circles.forEach((circle, i) => circle.setAttribute("fill", colors[i]));
  }

  highlight(index) {
    if (this.hovered >= 0) this.circles[this.hovered].classList.remove("tbv-emb-hover");
    this.hovered = index;
    if (index < 0) return;
    this.circles[index].classList.add("tbv-emb-hover");
    this.element.append(this.circles[index]); // on top of its neighbours
  }

  pointer(event) {
    return toViewBox(this.element, event);
  }
}

class CanvasPlot {
  constructor(n, label) {
    this.element = document.createElement("canvas");
    this.element.className = "tbv-emb-canvas";
    this.scale = Math.min(2, window.devicePixelRatio || 1);
    this.element.width = WIDTH * this.scale;
    this.element.height = HEIGHT * this.scale;
    this.element.setAttribute("role", "img");
    this.element.setAttribute("aria-label", label);
    this.element.dataset.points = String(n);
    this.positions = [];
    this.colors = [];
    this.hovered = -1;
    this.radius = n > 20000 ? 0.9 : 1.6;
  }

  place(positions) {
    this.positions = positions;
    this.draw();
  }

  paint(colors) {
    this.colors = colors;
    this.draw();
  }

  highlight(index) {
    this.hovered = index;
    this.draw();
  }

  pointer(event) {
    return toViewBox(this.element, event);
  }

  draw() {
    if (!this.positions.length || !this.colors.length) return;
    const started = performance.now();
    const context = this.element.getContext("2d");
    context.setTransform(this.scale, 0, 0, this.scale, 0, 0);
    context.clearRect(0, 0, WIDTH, HEIGHT);
    const byColor = new Map();
    this.colors.forEach((color, i) => {
      if (!byColor.has(color)) byColor.set(color, []);
      byColor.get(color).push(i);
    });
    const r = this.radius;
    for (const [color, indices] of byColor) {
      context.fillStyle = color;
      context.beginPath();
      for (const i of indices) {
        const [x, y] = this.positions[i];
        context.rect(x - r, y - r, 2 * r, 2 * r);
      }
      context.fill();
    }
    if (this.hovered >= 0) {
      const [x, y] = this.positions[this.hovered];
      context.beginPath();
      context.arc(x, y, RADIUS + 1, 0, 2 * Math.PI);
      context.fillStyle = this.colors[this.hovered];
      context.fill();
      context.lineWidth = 1.6;
      context.strokeStyle = "#000";
      context.stroke();
    }
    this.element.dataset.drawMs = String(Math.round(performance.now() - started));
  }
}
