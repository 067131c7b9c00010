"""Finding things on a big page, in headless Chromium: tag filter, sections, density, long captions,
the lightbox's focus, the sampling notice and a 100k-point embedding.

TensorBoard runs with ``--samples_per_plugin tb_viz=3`` here, so a tag with 6 steps is sampled.
"""

import json
import random
import time

import pytest

from tb_viz_plugin import summary

from tests.helpers import open_plugin_page, serve_runs, wait_images_loaded
from tests.synthetic import RunWriter, filter_items, tiny_png

HUGE = "a long caption " * 70_000  # ~1 MB
POINTS = 100_000


def _write(logdir):
    with RunWriter(logdir, "run_a") as w:
        for step in range(6):
            w.tb_viz("filters/many", "filters", step, filter_items(step))
        for step in (0, 1):
            w.tb_viz("filters/conv1", "filters", step, filter_items(step, 2, size=8))
            w.tb_viz("filters/conv2", "filters", step, filter_items(step, 1, size=8))
            w.tb_viz("activation_maps/block1", "activation_maps", step, filter_items(step, 2, size=8))
        w.tb_viz("captions/huge", "filters", 0, [summary.Item(tiny_png(8, 8), caption=HUGE, extra={"width": 8, "height": 8})])
        w.scalar("loss", 0, 1.0)
    rng = random.Random(0)
    meta = {
        "method": "pca", "num_samples": POINTS, "feature_dim": 16,
        "points": [[round(rng.gauss(c % 3, 0.4), 3), round(rng.gauss(c // 3, 0.4), 3)] for c in (i % 9 for i in range(POINTS))],
        "indices": list(range(POINTS)), "labels": [i % 9 for i in range(POINTS)],
    }
    with RunWriter(logdir, "run_big") as w:
        w.tb_viz("embeddings/big", "embeddings", 0, [], meta)


@pytest.fixture(scope="module")
def tensorboard_url(tmp_path_factory):
    logdir = str(tmp_path_factory.mktemp("finding_browser"))
    _write(logdir)
    with serve_runs(logdir, 2, samples=3) as url:
        yield url


def _visible_tags(frame):
    return frame.locator(".tbv-card:visible").evaluate_all("cs => cs.map(c => c.dataset.tag)")


def test_tag_filter_and_collapsible_sections_are_remembered(page, tensorboard_url):
    frame = open_plugin_page(page, tensorboard_url)
    frame.locator('.tbv-card[data-tag="filters/conv1"] img').first.wait_for(timeout=30000)
    assert len(_visible_tags(frame)) == 6
    search = frame.locator(".tbv-filter")
    search.fill("conv[12]$")
    search.press("Enter")
    frame.locator('.tbv-card[data-tag="filters/many"]').wait_for(state="hidden")
    assert sorted(_visible_tags(frame)) == ["filters/conv1", "filters/conv2"]
    assert frame.locator(".tbv-filter-status").inner_text() == "2 of 6 tags"
    assert frame.locator('.tbv-section[data-kind="activation_maps"]').is_hidden()
    search.fill("conv(")  # not a regex: say so, hide nothing
    search.press("Enter")
    frame.locator('.tbv-filter[aria-invalid="true"]').wait_for()
    assert "invalid regex" in frame.locator(".tbv-filter-status").inner_text()
    assert len(_visible_tags(frame)) == 6
    search.fill("^filters/")
    search.press("Enter")
    frame.locator('.tbv-section[data-kind="activation_maps"]').wait_for(state="hidden")

    # collapse the filters section; both choices survive a reload
    frame.locator('.tbv-section[data-kind="filters"] .tbv-section-toggle').click()
    assert frame.locator('.tbv-section[data-kind="filters"] .tbv-section-toggle').get_attribute("aria-expanded") == "false"
    assert _visible_tags(frame) == []
    items = []
    page.on("request", lambda request: items.append(request.url) if "/items?" in request.url else None)
    page.reload()
    frame = open_plugin_page(page, tensorboard_url)
    frame.locator('.tbv-section[data-kind="filters"].tbv-collapsed').wait_for(state="attached", timeout=30000)
    assert frame.locator(".tbv-filter").input_value() == "^filters/"
    assert _visible_tags(frame) == []
    page.wait_for_timeout(500)
    assert not [u for u in items if "filters%2Fconv" in u]  # collapsed cards fetch nothing
    frame.locator('.tbv-section[data-kind="filters"] .tbv-section-toggle').click()
    frame.locator('.tbv-card[data-tag="filters/conv1"] img').first.wait_for()
    assert sorted(_visible_tags(frame)) == ["filters/conv1", "filters/conv2", "filters/many"]


def test_density_native_size_and_enlarge(page, tensorboard_url):
    frame = open_plugin_page(page, tensorboard_url)
    card = '.tbv-card[data-tag="filters/conv1"]'
    wait_images_loaded(page, f"{card} img", 2)
    img = frame.locator(f"{card} .tbv-item img").first
    assert img.evaluate("i => [i.naturalWidth, i.clientWidth]") == [8, 8]  # native size, not stretched
    assert img.evaluate("i => getComputedStyle(i).imageRendering") == "pixelated"
    frame.locator(".tbv-upscale").check()
    page.wait_for_function("() => document.querySelector('.tbv-card[data-tag=\"filters/conv1\"] .tbv-item img').clientWidth === 256")
    frame.locator(".tbv-density").select_option("compact")
    assert img.evaluate("i => i.clientWidth") == 128
    frame.locator(".tbv-density").select_option("large")
    assert img.evaluate("i => i.clientWidth") == 512
    stored = frame.locator("body").evaluate("() => [localStorage.getItem('tb_viz.density'), localStorage.getItem('tb_viz.upscale')]")
    assert stored == ['"large"', "true"]
    frame.locator(".tbv-density").select_option("normal")
    frame.locator(".tbv-upscale").uncheck()
    assert img.evaluate("i => i.clientWidth") == 8


def test_long_caption_is_clipped_with_an_expander(page, tensorboard_url):
    frame = open_plugin_page(page, tensorboard_url)
    card = frame.locator('.tbv-card[data-tag="captions/huge"]')
    card.locator("img").wait_for(timeout=30000)
    assert card.bounding_box()["height"] < 400
    more = card.locator(".tbv-caption-more")
    assert more.get_attribute("aria-expanded") == "false"
    more.click()
    assert more.get_attribute("aria-expanded") == "true"
    caption = card.locator(".tbv-caption-text").bounding_box()["height"]
    assert 60 < caption <= 0.4 * 1000 + 1  # at most 40% of the viewport, scrollable
    assert card.bounding_box()["height"] < 700


def test_lightbox_keeps_focus_and_gives_it_back(page, tensorboard_url):
    frame = open_plugin_page(page, tensorboard_url)
    first = frame.locator('.tbv-card[data-tag="filters/conv1"] .tbv-panel .tbv-item img').first
    first.wait_for(timeout=30000)
    first.focus()
    page.keyboard.press("Enter")
    dialog = frame.locator('.tbv-lightbox[role="dialog"][aria-modal="true"]')
    dialog.wait_for()
    active = "() => document.activeElement.className"
    assert frame.locator("body").evaluate(active) == "tbv-lightbox-close"
    page.keyboard.press("Tab")
    assert frame.locator("body").evaluate(active) == "tbv-lightbox-close"  # focus stays in the dialog
    assert dialog.get_attribute("data-index") == "0"
    page.keyboard.press("ArrowRight")  # the panel's next image
    assert dialog.get_attribute("data-index") == "1"
    page.keyboard.press("Escape")
    dialog.wait_for(state="detached")
    second = frame.locator('.tbv-card[data-tag="filters/conv1"] .tbv-panel .tbv-item img').nth(1)
    assert second.evaluate("i => i === document.activeElement")  # back on the image last shown


def test_sampling_notice_comes_from_the_server(page, tensorboard_url):
    frame = open_plugin_page(page, tensorboard_url)
    hint = frame.locator(".tbv-hint")
    hint.wait_for(timeout=30000)
    text = hint.inner_text()
    assert "Showing 3 steps of 1 of 6" in text and "--samples_per_plugin tb_viz=0" in text, text
    assert frame.locator('.tbv-card[data-tag="filters/many"] .tbv-slider').get_attribute("max") == "2"


def test_embedding_of_100k_points_renders(page, tensorboard_url):
    started = time.monotonic()
    frame = open_plugin_page(page, tensorboard_url)
    canvas = frame.locator(f'.tbv-emb-canvas[data-points="{POINTS}"][data-draw-ms]')
    canvas.wait_for(timeout=60000)
    seconds = time.monotonic() - started
    drawn = canvas.evaluate("""c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; }""")
    assert drawn > 10_000, drawn  # points cover the canvas
    assert int(canvas.get_attribute("data-draw-ms")) < 1000
    assert frame.locator(".tbv-emb-point").count() == 0  # no 100k SVG nodes
    print(f"100k points: shown {seconds:.1f} s after opening the tab, one draw {canvas.get_attribute('data-draw-ms')} ms")
    assert seconds < 45
    assert json.loads(frame.locator(".tbv-emb").get_attribute("data-points")) == POINTS
