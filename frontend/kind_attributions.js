// Panel view of the `attributions` kind: a grid with one row per probe image and one column per
// method (and layer); every cell shows that method's map over the image.
//
// The maps arrive as single-channel PNGs normalised per map (see FORMAT.md), so the colormap, the
// opacity and the overlay/map-alone toggle are applied here, on a canvas, and can change without
// a new request. The choice is shared by every attribution grid of the page (and remembered).
// Signed maps (CAM, integrated gradients, occlusion: grey level 128 = 0) always use a diverging
// blue-white-red colormap so that the sign stays readable, and over the image their opacity grows
// with |value| (zero shows the image). Data in the manifest `meta`: columns
// [{method, title, layer, label, signed}], rows [{index, label_name, predicted_name, probability, ...}],
// optional faithfulness {steps, columns [{deletion, insertion}], random {deletion, insertion}} (shown
// under each column's title and above the grid); items carry `role` ("image" | "map"), `row`, and
// for maps `column`, `min`, `max`, `signed` (and `deletion`, `insertion` with faithfulness).

import {createItems} from "./items.js";
import {createError, h} from "./views.js";

const STORAGE_KEY = "tb_viz.attributions";
const DEFAULTS = {colormap: "jet", opacity: 0.5, overlay: true};

/** Colormap anchors (evenly spaced, RGB 0-255); jet is computed. */
const ANCHORS = {
  viridis: [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]],
  inferno: [[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]],
  gray: [[0, 0, 0], [255, 255, 255]],
  diverging: [[33, 102, 172], [146, 197, 222], [247, 247, 247], [244, 165, 130], [178, 24, 43]],
};
const COLORMAPS = ["jet", "viridis", "inferno", "gray"];

const STYLE = `
.tbv-attr-controls { display: flex; flex-wrap: wrap; align-items: center; gap: 4px 14px; margin-bottom: 6px; font-size: 12px; }
.tbv-attr-controls label { display: inline-flex; align-items: center; gap: 4px; cursor: pointer; }
.tbv-attr-controls input { margin: 0; accent-color: var(--tbv-accent, #f57c00); }
.tbv-attr-legends { display: inline-flex; flex-wrap: wrap; gap: 2px 14px; }
.tbv-attr-legend { display: inline-flex; align-items: center; gap: 4px; color: var(--tbv-muted, #757575); }
.tbv-attr-legend canvas { width: 64px; height: 8px; border: 1px solid var(--tbv-border, #e0e0e0); }
.tbv-attr-grid { display: grid; gap: 4px; align-items: start; }
.tbv-panel:has(.tbv-attr-grid) { max-width: 1100px; }
.tbv-attr-head { font-size: 11px; font-weight: 500; overflow-wrap: anywhere; align-self: end; }
.tbv-attr-layer { display: block; font-weight: 400; color: var(--tbv-muted, #757575); }
.tbv-attr-scores { display: block; font-weight: 400; font-variant-numeric: tabular-nums; color: var(--tbv-muted, #757575); }
.tbv-attr-faithfulness { font-size: 11px; margin-bottom: 4px; }
.tbv-attr-grid .tbv-item { min-width: 0; }
.tbv-attr-grid .tbv-caption { font-size: 10px; }
.tbv-attr-cell[data-state="loading"] img { visibility: hidden; }
`;

const settings = loadSettings();
/** Redraw functions of the grids built so far; dropped once their grid leaves the page. */
const liveGrids = new Set();
const lutCache = new Map();

function loadSettings() {
  try {
    const saved = JSON.parse(window.localStorage.getItem(STORAGE_KEY) || "{}");
    return {
      colormap: COLORMAPS.includes(saved.colormap) ? saved.colormap : DEFAULTS.colormap,
      opacity: Number.isFinite(saved.opacity) ? Math.min(1, Math.max(0, saved.opacity)) : DEFAULTS.opacity,
      overlay: typeof saved.overlay === "boolean" ? saved.overlay : DEFAULTS.overlay,
    };
  } catch (e) {
    return {...DEFAULTS};
  }
}

function changeSettings(change) {
  Object.assign(settings, change);
  try {
    window.localStorage.setItem(STORAGE_KEY, JSON.stringify(settings));
  } catch (e) {
    // Not persisted; the view keeps working.
  }
  pruneGrids();
  for (const grid of liveGrids) grid.redraw();
}

/** Forgets the grids no longer on the page (a new step or run replaced them), with their pixels. */
function pruneGrids() {
  for (const grid of [...liveGrids]) {
    if (!grid.root.isConnected) liveGrids.delete(grid);
  }
}

/**
 * 256 RGB entries of a colormap, as a flat Uint8ClampedArray.
 * @param {string} name
 * @return {!Uint8ClampedArray}
 */
function lookupTable(name) {
  if (lutCache.has(name)) return lutCache.get(name);
  const table = new Uint8ClampedArray(256 * 3);
  for (let level = 0; level < 256; level++) {
    const t = level / 255;
    let rgb;
    if (name === "jet") {
      rgb = [3, 2, 1].map((k) => 255 * Math.min(1, Math.max(0, 1.5 - Math.abs(4 * t - k))));
    } else {
      const anchors = ANCHORS[name] || ANCHORS.gray;
      const position = t * (anchors.length - 1);
      const low = Math.min(Math.floor(position), anchors.length - 2);
      const frac = position - low;
      rgb = anchors[low].map((value, c) => value * (1 - frac) + anchors[low + 1][c] * frac);
    }
    table.set(rgb, level * 3);
  }
  lutCache.set(name, table);
  return table;
}

function ensureStyles() {
  if (document.getElementById("tbv-attr-style")) return;
  document.head.append(Object.assign(document.createElement("style"), {id: "tbv-attr-style", textContent: STYLE}));
}

/** Loads an image URL and returns its RGBA pixels (same-origin, so readable). */
async function loadPixels(url, width, height) {
  const img = new Image();
  img.src = url;
  await img.decode();
  const canvas = Object.assign(document.createElement("canvas"), {width: width || img.naturalWidth, height: height || img.naturalHeight});
  const context = canvas.getContext("2d");
  context.drawImage(img, 0, 0, canvas.width, canvas.height);
  return context.getImageData(0, 0, canvas.width, canvas.height);
}

/**
 * The cell's picture: the map's grey levels through the colormap, over the photo or alone.
 * @param {!ImageData} map the map (grey levels in the red channel)
 * @param {!ImageData} photo the image, same size
 * @param {boolean} signed
 * @return {string} a data: URL
 */
function compose(map, photo, signed) {
  const table = lookupTable(signed ? "diverging" : settings.colormap);
  const opacity = settings.overlay ? settings.opacity : 1;
  const canvas = Object.assign(document.createElement("canvas"), {width: map.width, height: map.height});
  const context = canvas.getContext("2d");
  const out = context.createImageData(map.width, map.height);
  for (let i = 0; i < out.data.length; i += 4) {
    const level = map.data[i] * 3;
    // Signed: 0 (level 128) lets the image through, +-max covers it at twice the chosen opacity.
    const alpha = signed && settings.overlay ? Math.min(1, (2 * opacity * Math.abs(map.data[i] - 128)) / 127) : opacity;
    for (let c = 0; c < 3; c++) {
      out.data[i + c] = alpha * table[level + c] + (1 - alpha) * photo.data[i + c];
    }
    out.data[i + 3] = 255;
  }
  context.putImageData(out, 0, 0);
  return canvas.toDataURL("image/png");
}

function legend(name, left, right) {
  const bar = Object.assign(document.createElement("canvas"), {width: 64, height: 1});
  const context = bar.getContext("2d");
  const pixels = context.createImageData(64, 1);
  const table = lookupTable(name);
  for (let x = 0; x < 64; x++) {
    const level = Math.round((x / 63) * 255) * 3;
    pixels.data.set([table[level], table[level + 1], table[level + 2], 255], x * 4);
  }
  context.putImageData(pixels, 0, 0);
  const box = h("span", "tbv-attr-legend");
  box.append(left, bar, right);
  return box;
}

function createControls(hasSigned, hasUnsigned) {
  const root = h("div", "tbv-attr-controls");
  const colormap = h("select", "tbv-attr-colormap");
  colormap.setAttribute("aria-label", "Colormap");
  for (const name of COLORMAPS) colormap.append(Object.assign(h("option", "", name), {value: name}));
  const opacity = Object.assign(h("input", "tbv-attr-opacity"), {type: "range", min: "0", max: "100", step: "5"});
  opacity.setAttribute("aria-label", "Opacity of the map over the image");
  const overlay = Object.assign(h("input", "tbv-attr-overlay"), {type: "checkbox"});
  const colormapLabel = h("label", "", "colormap ");
  colormapLabel.append(colormap);
  const opacityLabel = h("label", "", "opacity ");
  opacityLabel.append(opacity);
  const overlayLabel = h("label");
  overlayLabel.append(overlay, " over the image");
  root.append(colormapLabel, overlayLabel, opacityLabel);
  const legends = h("span", "tbv-attr-legends");
  root.append(legends);

  const sync = () => {
    colormap.value = settings.colormap;
    opacity.value = String(Math.round(settings.opacity * 100));
    opacity.disabled = !settings.overlay;
    overlay.checked = settings.overlay;
    legends.textContent = "";
    if (hasUnsigned) legends.append(legend(settings.colormap, "low", "high"));
    if (hasSigned) legends.append(legend("diverging", "signed: −", "+"));
  };
  colormap.addEventListener("change", () => changeSettings({colormap: colormap.value}));
  opacity.addEventListener("input", () => changeSettings({opacity: Number(opacity.value) / 100}));
  overlay.addEventListener("change", () => changeSettings({overlay: overlay.checked}));
  sync();
  return {root, sync};
}

function rowCaption(row, item) {
  return item.caption === undefined || item.caption === null ? `#${row}` : String(item.caption);
}

function headCell(title, layer, scores) {
  const cell = h("div", "tbv-attr-head", title);
  if (layer) cell.append(h("span", "tbv-attr-layer", `@ ${layer}`));
  cell.title = layer ? `${title} @ ${layer}` : title;
  if (scores) cell.append(scoreLine(scores, "tbv-attr-scores"));
  return cell;
}

function score(value) {
  return typeof value === "number" && Number.isFinite(value) ? value.toFixed(2) : "?";
}

/** "del 0.21 · ins 0.52": mean deletion (lower is better) and insertion (higher is better) AUC. */
function scoreLine(scores, className) {
  const line = h("span", className, `del ${score(scores.deletion)} · ins ${score(scores.insertion)}`);
  line.dataset.deletion = String(scores.deletion);
  line.dataset.insertion = String(scores.insertion);
  line.title = "faithfulness, mean over the images: deletion AUC (class probability as the most attributed " +
    "pixels are removed; lower is better) · insertion AUC (as they are put into a blurred copy; higher is better)";
  return line;
}

/** The faithfulness line above the grid: steps and the random map's scores, the baseline to beat. */
function faithfulnessLine(faithfulness) {
  const line = h("div", "tbv-attr-faithfulness tbv-muted", `faithfulness (${faithfulness.steps} steps) · random map: `);
  line.append(scoreLine(faithfulness.random || {}, "tbv-attr-random"));
  return line;
}

/**
 * The panel body for one `attributions` /items answer (the signature of Views.createItems).
 * Falls back to the generic image list when the manifest lacks the grid's structure.
 * @param {!Object} response
 * @param {function(!Object): string} imageUrl
 * @return {!DocumentFragment}
 */
export function createAttributionGrid(response, imageUrl) {
  const meta = response.meta && typeof response.meta === "object" ? response.meta : {};
  const columns = Array.isArray(meta.columns) ? meta.columns : [];
  const items = Array.isArray(response.items) ? response.items : [];
  const photos = new Map();
  const maps = new Map();
  for (const item of items) {
    if (item && item.role === "image" && Number.isInteger(item.row)) photos.set(item.row, item);
    if (item && item.role === "map" && Number.isInteger(item.row) && Number.isInteger(item.column)) {
      maps.set(`${item.row}:${item.column}`, item);
    }
  }
  if (!columns.length || !photos.size) return createItems(response, imageUrl);
  ensureStyles();

  const fragment = document.createDocumentFragment();
  const signed = columns.map((column) => Boolean(column && column.signed));
  const controls = createControls(signed.some(Boolean), signed.some((s) => !s));
  fragment.append(controls.root);

  const grid = h("div", "tbv-attr-grid");
  const rows = [...photos.keys()].sort((a, b) => a - b);
  grid.dataset.rows = String(rows.length);
  grid.dataset.columns = String(columns.length);
  grid.style.gridTemplateColumns = `repeat(${columns.length + 1}, minmax(56px, 1fr))`;
  const faithfulness = meta.faithfulness && typeof meta.faithfulness === "object" &&
    Array.isArray(meta.faithfulness.columns) ? meta.faithfulness : null;
  if (faithfulness) fragment.append(faithfulnessLine(faithfulness));
  grid.append(headCell("image"), ...columns.map((column, index) => column && typeof column === "object" ?
    headCell(String(column.title || column.label || column.method), column.layer ? String(column.layer) : "",
      faithfulness ? faithfulness.columns[index] : null) :
    headCell("?")));

  const cells = [];
  const draw = (cell) => {
    cell.img.src = compose(cell.pixels[0], cell.pixels[1], cell.signed);
    cell.figure.dataset.state = "ready";
    cell.figure.dataset.colormap = cell.signed ? "diverging" : settings.colormap;
    cell.figure.dataset.overlay = String(settings.overlay);
  };
  for (const row of rows) {
    const photoItem = photos.get(row);
    const photoFigure = h("figure", "tbv-item tbv-attr-image");
    const photo = h("img");
    photo.alt = rowCaption(row, photoItem);
    photo.title = photo.alt;
    photo.tabIndex = 0;
    photo.src = imageUrl(photoItem);
    photoFigure.append(photo, h("figcaption", "tbv-caption", photo.alt));
    grid.append(photoFigure);
    const photoPixels = loadPixels(imageUrl(photoItem));
    columns.forEach((column, index) => {
      const item = maps.get(`${row}:${index}`);
      const figure = h("figure", "tbv-item tbv-attr-cell");
      figure.dataset.row = String(row);
      figure.dataset.column = String(index);
      figure.dataset.method = String((column && column.method) || "");
      grid.append(figure);
      if (!item) {
        figure.append(h("div", "tbv-muted", "no map"));
        return;
      }
      const img = h("img");
      img.alt = String(item.caption || "");
      img.title = typeof item.deletion === "number" ?
        `${img.alt}\ndeletion ${score(item.deletion)} · insertion ${score(item.insertion)}` : img.alt;
      img.tabIndex = 0;
      figure.dataset.state = "loading";
      figure.append(img);
      const cell = {figure, img, signed: Boolean(item.signed), pixels: null};
      Promise.all([photoPixels.then((p) => loadPixels(imageUrl(item), p.width, p.height)), photoPixels]).then(
        (pixels) => {
          cell.pixels = pixels;
          cells.push(cell);
          draw(cell);
        },
        (error) => {
          figure.textContent = "";
          figure.append(createError(`Could not load the map or its image (${error.message || error}).`));
          figure.dataset.state = "failed";
        });
    });
  }
  fragment.append(grid);
  pruneGrids(); // before adding this one, which joins the page only when the caller appends it
  liveGrids.add({
    root: grid,
    redraw() {
      controls.sync();
      cells.forEach(draw);
    },
  });
  return fragment;
}
