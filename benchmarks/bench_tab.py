"""Page benchmark of the CNN viz tab: 20 runs x 8 tags of tiny images in a real TensorBoard.

Writes the runs torch-free (``tests/synthetic.py``: ``summary.build_summary`` + TensorBoard's own
event writer; 16 x 16 px PNGs, 10 steps per tag, loss and val_acc curves), serves them with
TensorBoard (``--samples_per_plugin tb_viz=0``), opens the tab in headless Chromium (1400 x 1000)
and reports, for the first load:

- first image: seconds from the navigation to the first decoded tb-viz image;
- requests at load: requests to the plugin's routes until the network stays idle for 2 s, per route;
- page height: the tab's document height in px, and how many panels fit in the first screen.

``--source DIR`` serves the tab of another checkout (e.g. an older one unpacked with
``git archive``) to compare. Run: ``.venv/bin/python benchmarks/bench_tab.py [--runs 20 --tags 8]``.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, HERE)

from playwright.sync_api import sync_playwright  # noqa: E402

from tests.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from tests.serving import open_tab, serve_tensorboard, wait_for_json  # noqa: E402
from tests.synthetic import write_run  # noqa: E402


def write_logdir(logdir: str, runs: int, tags: int, steps: int, size: int) -> None:
    """``runs`` runs, each with ``tags`` filter tags at ``steps`` steps and two scalar curves."""
    names = [f"filters/layer{i}" for i in range(tags)]
    for r in range(runs):
        write_run(logdir, f"run_{r:02d}", [10 * s for s in range(steps)], tags=names, size=size)


def measure(url: str, width: int, height: int) -> dict:
    """One cold load of the tab: first image time, plugin requests until idle, page height."""
    requests = collections.Counter()
    last_request = [time.monotonic()]

    def on_request(request):
        if "/data/plugin/tb_viz/" in request.url:
            route = request.url.split("/data/plugin/tb_viz/", 1)[1].split("?", 1)[0]
            requests["static" if route.startswith("static/") else route] += 1
            last_request[0] = time.monotonic()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": width, "height": height})
        page.on("request", on_request)
        started = time.monotonic()
        open_tab(page, url)
        page.wait_for_function("""() => {
            const f = document.querySelector('iframe[src*="plugin_entry.html?name=tb_viz"]');
            const d = f && f.contentDocument;
            return d && [...d.querySelectorAll('.tbv-item img')].some(i => i.complete && i.naturalWidth > 0);
        }""", timeout=120000, polling=20)
        first_image = time.monotonic() - started
        while time.monotonic() - last_request[0] < 2.0:
            page.wait_for_timeout(200)
        figures = page.evaluate("""() => {
            const f = document.querySelector('iframe[src*="plugin_entry.html?name=tb_viz"]');
            const d = f.contentDocument;
            const screen = f.getBoundingClientRect().height;
            const panels = [...d.querySelectorAll('.tbv-panel')];
            const inView = panels.filter(p => { const b = p.getBoundingClientRect(); return b.top >= 0 && b.bottom <= screen; });
            const imgs = [...d.querySelectorAll('.tbv-item img')];
            return {height: d.documentElement.scrollHeight, panels: panels.length, panels_in_first_screen: inView.length,
                    image_width: imgs.length ? Math.max(...imgs.map(i => i.clientWidth)) : 0,
                    images_loaded: imgs.filter(i => i.complete && i.naturalWidth > 0).length};
        }""")
        browser.close()
    figures.update(first_image_s=round(first_image, 2), requests=dict(requests), requests_total=sum(requests.values()))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--tags", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--size", type=int, default=16, help="image side in px")
    parser.add_argument("--source", default=None, help="serve the tab of this source tree instead")
    parser.add_argument("--load-fast", default="false", choices=["false", "true"])
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=1000)
    args = parser.parse_args()
    if args.source:  # TensorBoard's `python -m` puts its working directory first on sys.path
        os.environ["PYTHONPATH"] = os.path.abspath(args.source)
        os.chdir(args.source)
    with tempfile.TemporaryDirectory() as logdir:
        write_logdir(logdir, args.runs, args.tags, args.steps, args.size)
        with serve_tensorboard(logdir, args.load_fast) as url:
            wait_for_json(url + "data/plugin/tb_viz/tags", lambda body: len(body["runs"]) == args.runs, timeout=120)
            figures = measure(url, args.width, args.height)
    print(f"{args.runs} runs x {args.tags} tags, {args.steps} steps, {args.size} px images, "
          f"{args.width} x {args.height} viewport, source: {args.source or HERE}")
    for key, value in figures.items():
        print(f"  {key}: {value}")


if __name__ == "__main__":
    main()
