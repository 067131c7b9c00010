"""Torch-free test helpers: a real TensorBoard server and the tab in a headless browser.

Re-exported by ``tests/helpers.py``; imported directly by ``benchmarks/bench_tab.py`` and
``tests/screenshot.py``, which must not import torch.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import threading
import time
import urllib.request
from typing import Callable, Iterator, Optional


@contextlib.contextmanager
def serve_tensorboard(logdir: str, load_fast: str = "false", timeout: float = 60.0, samples: int = 0) -> Iterator[str]:
    """Run ``tensorboard`` (the real CLI, plugins from entry points) on a free port; yield its URL.

    ``samples`` is ``--samples_per_plugin tb_viz=N`` (0: every step).
    """
    command = [
        sys.executable, "-m", "tensorboard.main", "--logdir", logdir, "--host", "127.0.0.1", "--port", "0",
        "--load_fast", load_fast, "--reload_interval", "1", "--samples_per_plugin", f"tb_viz={samples}",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list = []
    try:
        deadline = time.monotonic() + timeout
        url = None
        while url is None:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("TensorBoard did not start:\n" + "".join(lines))
            line = process.stdout.readline()
            lines.append(line)
            match = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
            url = match.group(1) if match else None
        threading.Thread(target=lambda: [None for _ in process.stdout], daemon=True).start()  # drain output
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def wait_for_json(url: str, ready: Callable[[dict], bool], timeout: float = 60.0) -> dict:
    """GET ``url`` until its JSON satisfies ``ready`` (the data server ingests in the background)."""
    deadline = time.monotonic() + timeout
    while True:
        with urllib.request.urlopen(url, timeout=30) as response:
            body = json.loads(response.read())
        if ready(body) or time.monotonic() > deadline:
            return body
        time.sleep(0.25)


@contextlib.contextmanager
def serve_runs(logdir: str, runs: int, load_fast: str = "false", samples: int = 0) -> Iterator[str]:
    """``serve_tensorboard``, yielding its URL once the tab's tag list shows ``runs`` runs."""
    with serve_tensorboard(logdir, load_fast, samples=samples) as url:
        wait_for_json(url + "data/plugin/tb_viz/tags", lambda body: len(body["runs"]) == runs)
        yield url


def open_tab(page, url: str, poll_ms: Optional[int] = None):
    """Open TensorBoard's CNN viz tab and return the plugin iframe's frame locator.

    ``poll_ms`` sets the tab's live polling interval (stored as its preference before it loads).
    """
    if poll_ms is not None:
        page.add_init_script(f"try {{ localStorage.setItem('tb_viz.pollMs', '{int(poll_ms)}'); }} catch (e) {{}}")
    page.goto(url + "#tb_viz")
    return page.frame_locator('iframe[src*="plugin_entry.html?name=tb_viz"]')


def wait_images_loaded(page, selector: str, count: int, exact: bool = True, timeout: float = 30000) -> int:
    """Wait until ``count`` images matching ``selector`` in the tab have loaded (decoded, non-empty).

    Looks inside TensorBoard's tb_viz iframe when the page has one, else in the page itself (the
    plugin entry page opened directly). ``exact=False`` waits for at least ``count``. Returns the
    number of loaded images.
    """
    script = """([selector, count, exact]) => {
        const frame = document.querySelector('iframe[src*="plugin_entry.html?name=tb_viz"]');
        const doc = frame ? frame.contentDocument : document;
        if (!doc) return false;
        const loaded = [...doc.querySelectorAll(selector)].filter(i => i.complete && i.naturalWidth > 0).length;
        return (exact ? loaded === count : loaded >= count) ? loaded : false;
    }"""
    return page.wait_for_function(script, arg=[selector, count, exact], timeout=timeout).json_value()


def open_plugin_page(page, url: str, poll_ms: Optional[int] = None):
    """Open the tab's page on its own (``plugin_entry.html``, no TensorBoard UI around it); return ``page``.

    Faster than ``open_tab`` (TensorBoard's own frontend is not loaded); the tab then shows every
    run with tb_viz data (no run selector to follow). The returned page has the same ``locator``
    API as ``open_tab``'s frame locator.
    """
    if poll_ms is not None:
        page.add_init_script(f"try {{ localStorage.setItem('tb_viz.pollMs', '{int(poll_ms)}'); }} catch (e) {{}}")
    page.goto(url + "data/plugin_entry.html?name=tb_viz")
    return page
