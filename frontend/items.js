// tb-viz frontend: the generic panel body (a meta line and the step's images with captions),
// used by every kind without a view of its own and as a building block by the others.
//
// Images show at their native size by default (never stretched past it, pixelated when the user
// enlarges them), capped by the density's thumbnail size. Long captions are clipped to a few lines
// with an expander, so a megabyte of caption text cannot make a card taller than the screen.

import {button, h, shorten} from "./views.js";

const CAPTION_CLIP_CHARS = 140;
const CAPTION_MAX_CHARS = 20000;
const TOOLTIP_CHARS = 600;

function formatValue(value, round) {
  if (round && typeof value === "number" && !Number.isInteger(value)) {
    return String(Number(value.toPrecision(4)));
  }
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return text === undefined ? String(value) : text;
}

/**
 * A caption, clipped to three lines with a "more" expander when long.
 * @param {string} text
 * @param {string=} className
 * @return {!HTMLElement}
 */
export function createCaption(text, className = "tbv-caption") {
  const caption = h("figcaption", className);
  const body = h("span", "tbv-caption-text", shorten(text, CAPTION_MAX_CHARS));
  caption.append(body);
  if (text.length > CAPTION_CLIP_CHARS || text.split("\n").length > 3) {
    caption.classList.add("tbv-caption-clipped");
    const more = button("tbv-caption-more", "more", "Show the whole caption");
    more.setAttribute("aria-expanded", "false");
    more.addEventListener("click", (event) => {
      event.stopPropagation();
      const open = caption.classList.toggle("tbv-caption-open");
      more.textContent = open ? "less" : "more";
      more.setAttribute("aria-expanded", String(open));
    });
    caption.append(more);
  }
  return caption;
}

/**
 * One item's image element: native size reserved from the manifest, tooltip from its extras.
 * @param {!Object} item an /items entry
 * @param {string} src
 * @param {string} fallbackAlt
 * @return {!HTMLImageElement}
 */
export function createImage(item, src, fallbackAlt) {
  const caption = item.caption === undefined || item.caption === null ? "" : String(item.caption);
  const img = h("img");
  img.alt = shorten(caption || fallbackAlt, TOOLTIP_CHARS);
  img.decoding = "async";
  img.tabIndex = 0;
  const width = Number(item.width);
  const height = Number(item.height);
  if (width > 0 && height > 0) {
    img.width = width;
    img.height = height;
  }
  const extra = Object.entries(item)
    .filter(([key]) => !["url", "caption", "width", "height"].includes(key))
    .map(([key, value]) => shorten(`${key}: ${formatValue(value)}`, 200));
  img.title = shorten([caption, ...extra].filter(Boolean).join("\n"), TOOLTIP_CHARS) || "click to enlarge";
  img.src = src;
  return img;
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
    // One clipped line (click expands every meta line); the tooltip has the values, shortened.
    const line = h("div", "tbv-meta");
    line.title = shorten(metaEntries.map(([key, value]) => shorten(`${key}: ${formatValue(value, false)}`, 300))
      .join("\n"), 3000);
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
    if (!item || typeof item !== "object") continue;
    const figure = h("figure", "tbv-item");
    figure.append(createImage(item, imageUrl(item), String(response.tag || "")));
    const caption = item.caption === undefined || item.caption === null ? "" : String(item.caption);
    if (caption) figure.append(createCaption(caption));
    list.append(figure);
  }
  fragment.append(list);
  return fragment;
}
