"""Take the README's screenshots from a real log directory: ``python -m tests.screenshot LOGDIR OUT.png``.

Serves LOGDIR with TensorBoard, opens the CNN viz tab in headless Chromium, waits until every
visible image has loaded, and saves a screenshot. ``make screenshot`` runs it on fresh demo runs.
"""

import argparse
import json

from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import sync_playwright

from tests.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.serving import open_tab, serve_tensorboard, wait_for_json


def _settled(seen: list, body: dict) -> bool:
    """True once ``body`` has runs and equals the previous 8 answers (about 2 s unchanged)."""
    seen.append(body)
    return bool(body["runs"]) and len(seen) > 8 and all(previous == body for previous in seen[-9:-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("logdir")
    parser.add_argument("out")
    parser.add_argument("--tag", default=None, help="scroll this card (data-tag) into view first")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=900)
    parser.add_argument("--card", action="store_true", help="save the --tag card alone, not the viewport")
    parser.add_argument("--pref", action="append", default=[], metavar="NAME=JSON",
                        help="a tab preference set before it loads, e.g. topkOcclusion=true (repeatable)")
    args = parser.parse_args()
    with serve_tensorboard(args.logdir) as url, sync_playwright() as playwright:
        # TensorBoard ingests runs in the background: wait until the tag list stops changing.
        seen: list = []
        wait_for_json(url + "data/plugin/tb_viz/tags", lambda body: _settled(seen, body), timeout=120)
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": args.width, "height": args.height})
        for pref in args.pref:
            name, value = pref.split("=", 1)
            page.add_init_script(f"try {{ localStorage.setItem('tb_viz.' + {json.dumps(name)}, {json.dumps(value)}); }} catch (e) {{}}")
        frame = open_tab(page, url)
        card = frame.locator(f'.tbv-card[data-tag="{args.tag}"]' if args.tag else ".tbv-card").first
        card.wait_for(timeout=60000)
        card.scroll_into_view_if_needed()
        card.locator(".tbv-item img").first.wait_for(timeout=60000)
        if card.locator(".tbv-curves").count():  # the runs log scalars: wait for their curves too
            try:
                card.locator(".tbv-curves svg path.tbv-curve-line").first.wait_for(state="attached", timeout=20000)
            except PlaywrightTimeout:  # curves with fewer than two points draw no line
                pass
        page.wait_for_timeout(1500)  # let the remaining images of the viewport decode
        if args.card:
            card.screenshot(path=args.out)
        else:
            page.screenshot(path=args.out)
        browser.close()


if __name__ == "__main__":
    main()
