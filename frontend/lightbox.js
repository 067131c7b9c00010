// tb-viz frontend: the lightbox, one image at full window size.
//
// A modal dialog: focus moves to its close button and stays inside it (Tab cycles), Escape or a
// click closes it and focus returns to the image that opened it; the arrow keys step through
// the other images of the same panel.

import {button, h} from "./views.js";

/**
 * Opens `img` (an image of a panel) in a full-window overlay (`.tbv-lightbox`).
 * @param {!HTMLImageElement} img
 * @return {!HTMLElement} the dialog element
 */
export function openLightbox(img) {
  const opener = img;
  const siblings = [...(img.closest(".tbv-panel-body") || img.parentElement).querySelectorAll(".tbv-item img")];
  let index = Math.max(siblings.indexOf(img), 0);

  const root = h("div", "tbv-lightbox");
  root.setAttribute("role", "dialog");
  root.setAttribute("aria-modal", "true");
  root.tabIndex = -1;
  const picture = h("img");
  const caption = h("div", "tbv-lightbox-caption");
  const close = button("tbv-lightbox-close", "×", "Close (Escape)");
  close.setAttribute("aria-label", "Close");
  const hint = h("div", "tbv-lightbox-hint",
    siblings.length > 1 ? "← → other images · Escape or click to close" : "Escape or click to close");
  root.append(close, picture, caption, hint);

  const show = () => {
    const current = siblings[index] || opener;
    picture.src = current.currentSrc || current.src;
    picture.alt = current.alt;
    caption.textContent = current.alt;
    root.setAttribute("aria-label", current.alt || "image");
    root.dataset.index = String(index);
  };
  const dismiss = () => {
    root.remove();
    document.removeEventListener("keydown", onKey, true);
    const back = siblings[index] && siblings[index].isConnected ? siblings[index] : opener;
    if (back.isConnected) back.focus();
  };
  const onKey = (event) => {
    if (event.key === "Escape") {
      event.preventDefault();
      dismiss();
    } else if (event.key === "Tab") {
      event.preventDefault(); // the close button is the dialog's only control
      close.focus();
    } else if ((event.key === "ArrowRight" || event.key === "ArrowLeft") && siblings.length > 1) {
      event.preventDefault();
      index = (index + (event.key === "ArrowRight" ? 1 : siblings.length - 1)) % siblings.length;
      show();
    }
  };
  root.addEventListener("click", dismiss);
  document.addEventListener("keydown", onKey, true);
  show();
  document.body.append(root);
  close.focus();
  return root;
}
