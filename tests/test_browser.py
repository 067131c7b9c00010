"""The CNN viz tab in a real headless Chromium (Debian's), driven by Playwright.

The first test saves a screenshot (``$TB_VIZ_SCREENSHOT`` or a temporary file); the README's
screenshot comes from real demo runs through ``make screenshot`` (``tests/screenshot.py``).
"""

import os

import pytest

from tests.helpers import open_tab, serve_runs, wait_images_loaded, write_filter_run

XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def tensorboard_url(tmp_path_factory):
    logdir = str(tmp_path_factory.mktemp("browser"))
    write_filter_run(logdir, "run_a", steps=[0, 10, 20], seed=0)
    write_filter_run(logdir, "run_b", steps=[0, 10, 20, 30], seed=1)
    write_filter_run(logdir, XSS, steps=[5], seed=2)
    with serve_runs(logdir, 3) as url:
        yield url


def _loaded_images(locator):
    return locator.evaluate_all("imgs => imgs.filter(i => i.complete && i.naturalWidth > 0).map(i => i.naturalWidth)")


def test_tab_shows_filter_grids_and_slider_changes_step(page, tensorboard_url, tmp_path):
    frame = open_tab(page, tensorboard_url)
    card = frame.locator('.tbv-card[data-tag="filters/0.0"]')
    card.wait_for(timeout=30000)
    panels = card.locator(".tbv-panel")
    panels.first.wait_for()
    assert sorted(panels.evaluate_all("ps => ps.map(p => p.dataset.run)")) == sorted(["run_a", "run_b", XSS])

    images = card.locator(".tbv-item img")
    card.locator('.tbv-panel[data-run="run_b"][data-step="30"] .tbv-item img').wait_for()
    wait_images_loaded(page, '.tbv-card[data-tag="filters/0.0"] img', 3)
    assert len(_loaded_images(images)) == 3
    assert card.get_attribute("data-step") == "30"  # the latest step of all runs

    run_a = card.locator('.tbv-panel[data-run="run_a"]')
    assert run_a.get_attribute("data-step") == "20"  # run_a has no step 30: nearest below
    src_before = run_a.locator(".tbv-item img").get_attribute("src")

    slider = card.locator(".tbv-slider")
    slider.focus()
    slider.press("Home")
    frame.locator('.tbv-card[data-tag="filters/0.0"] .tbv-panel[data-run="run_a"][data-step="0"] img').wait_for()
    assert card.get_attribute("data-step") == "0"
    assert run_a.locator(".tbv-item img").get_attribute("src") != src_before
    assert card.locator(".tbv-slider-value").get_attribute("data-step") == "0"

    # deeper layer: its own card with the per-channel layout
    deeper = frame.locator('.tbv-card[data-tag="filters/0.2"]')
    assert deeper.count() == 1

    # the run named like HTML is text, not markup
    assert page.dialogs == []
    assert frame.locator('img[src="x"]').count() == 0
    assert frame.locator(f'.tbv-panel[data-run="{XSS}"]').first.inner_text().find(XSS) >= 0

    page.screenshot(path=os.environ.get("TB_VIZ_SCREENSHOT") or str(tmp_path / "tab.png"))


def test_link_steps_lightbox_and_fetch_errors(page, tensorboard_url):
    frame = open_tab(page, tensorboard_url)
    first = frame.locator('.tbv-card[data-tag="filters/0.0"]')
    second = frame.locator('.tbv-card[data-tag="filters/0.2"]')
    first.locator(".tbv-item img").first.wait_for(timeout=30000)

    link = frame.locator("#tbv-link-steps")
    if not link.is_checked():
        link.check()
    slider = first.locator(".tbv-slider")
    slider.focus()
    slider.press("Home")
    frame.locator('.tbv-card[data-tag="filters/0.2"][data-step="0"]').wait_for()
    assert second.get_attribute("data-step") == "0"

    first.locator(".tbv-item img").first.click()
    lightbox = frame.locator(".tbv-lightbox")
    lightbox.wait_for(state="visible")
    assert lightbox.locator("img").evaluate("i => i.naturalWidth") > 0
    page.keyboard.press("Escape")
    lightbox.wait_for(state="hidden")

    # a failing request is shown to the user, with its status and message
    page.route("**/data/plugin/tb_viz/items*", lambda route: route.fulfill(status=500, body="boom from the server"))
    slider.focus()
    slider.press("ArrowRight")  # step 5: already seen (cached); step 10: never requested
    slider.press("ArrowRight")
    error = first.locator(".tbv-error").first
    error.wait_for(timeout=15000)
    assert "500" in error.inner_text() and "boom from the server" in error.inner_text()
    assert page.dialogs == []
