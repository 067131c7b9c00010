"""A run that is still training, and comparing steps, in headless Chromium with a real TensorBoard.

The live run is written torch-free (``tests/synthetic.py``) while the tab is open; the tab polls
every 400 ms here (5 s by default) and TensorBoard reloads every second.
"""

import pytest

from tests.helpers import open_plugin_page, open_tab, serve_runs, wait_images_loaded
from tests.synthetic import RunWriter, filter_items, write_run

FOLLOW = '.tbv-card[data-tag="filters/follow"]'
STAY = '.tbv-card[data-tag="filters/stay"]'
CMP = '.tbv-card[data-tag="filters/compare"]'

# Counts images put into panels after the first load, and those not yet decoded when inserted
# (a blank moment: a flicker).
WATCH = """() => {
  window.tbvSwaps = 0;
  window.tbvBlank = 0;
  new MutationObserver((records) => {
    for (const record of records) {
      for (const node of record.addedNodes) {
        if (!(node instanceof Element) || !node.closest('.tbv-panel-body')) continue;
        for (const img of node.matches('img') ? [node] : node.querySelectorAll('img')) {
          window.tbvSwaps += 1;
          if (!(img.complete && img.naturalWidth > 0)) window.tbvBlank += 1;
        }
      }
    }
  }).observe(document.body, {childList: true, subtree: true});
}"""


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    logdir = str(tmp_path_factory.mktemp("live_browser"))
    write_run(logdir, "run_c", [0, 10, 20], tags=("filters/compare",), size=12)
    writer = RunWriter(logdir, "run_live")
    for step in (0, 10):
        for tag in ("filters/follow", "filters/stay"):
            writer.tb_viz(tag, "filters", step, filter_items(step))
        writer.scalar("loss", step, 1.0 / (1 + step))
    with serve_runs(logdir, 2) as url:
        yield url, writer
    writer.close()


def test_a_live_run_shows_new_steps_without_a_click(page, live):
    url, writer = live
    frame = open_tab(page, url, poll_ms=400)
    frame.locator(f'{FOLLOW} .tbv-panel[data-step="10"] img').wait_for(timeout=30000)
    frame.locator(f'{STAY} .tbv-panel[data-step="10"] img').wait_for()
    frame.locator(".tbv-live").filter(has_text="live").wait_for()
    # the user moves one card back: it stays there when new steps arrive
    frame.locator(f"{STAY} .tbv-slider").focus()
    page.keyboard.press("Home")
    frame.locator(f'{STAY} .tbv-panel[data-step="0"] img').wait_for()
    frame.locator("body").evaluate(WATCH)
    src = frame.locator(f"{FOLLOW} .tbv-panel img").get_attribute("src")

    for tag in ("filters/follow", "filters/stay"):
        writer.tb_viz(tag, "filters", 20, filter_items(20))
    writer.scalar("loss", 20, 1.0 / 21)
    frame.locator(f'{FOLLOW}[data-step="20"] .tbv-panel[data-step="20"] img').wait_for(timeout=30000)
    wait_images_loaded(page, f'{FOLLOW} .tbv-panel[data-step="20"] img', 1)
    assert frame.locator(f"{FOLLOW} .tbv-panel img").get_attribute("src") != src
    stay = frame.locator(STAY)
    assert stay.get_attribute("data-step") == "0"  # the slider the user moved stays
    assert stay.locator(".tbv-slider").get_attribute("aria-valuetext") == "step 0 (1 of 3 steps)"  # knows step 20
    marker = frame.locator(f'{FOLLOW} .tbv-curve[data-tag="loss"] line.tbv-curve-marker[data-step="20"]')
    marker.wait_for(state="attached", timeout=15000)  # the curve grew and its marker followed
    swaps, blank = frame.locator("body").evaluate("() => [window.tbvSwaps, window.tbvBlank]")
    assert swaps >= 1 and blank == 0  # the new image replaced the old one only once decoded


def test_compare_two_steps_side_by_side_and_with_a_swipe(page, live):
    url, _ = live
    frame = open_plugin_page(page, url)
    card = frame.locator(CMP)
    card.locator('.tbv-panel[data-step="20"] img').wait_for(timeout=30000)
    card.locator(".tbv-compare-toggle").click()
    panel = card.locator('.tbv-panel[data-run="run_c"]')
    frame.locator(f'{CMP} .tbv-panel[data-step="20"][data-step-b="0"] [data-side="b"] img').wait_for()
    assert card.get_attribute("data-compare") == "side"
    assert card.locator(".tbv-compare-toggle").get_attribute("aria-pressed") == "true"
    wait_images_loaded(page, f'{CMP} .tbv-panel img', 2)
    side_a = panel.locator('[data-side="a"] img')
    side_b = panel.locator('[data-side="b"] img')
    assert side_a.get_attribute("src") != side_b.get_attribute("src")
    box_a, box_b = side_a.bounding_box(), side_b.bounding_box()
    assert box_b["x"] >= box_a["x"] + box_a["width"] - 1  # side by side
    assert "step 20 vs step 0" in panel.locator(".tbv-step").inner_text()

    # step B moves on its own slider
    card.locator(".tbv-slider-b").focus()
    page.keyboard.press("ArrowRight")
    frame.locator(f'{CMP} .tbv-panel[data-step-b="10"] [data-side="b"] img').wait_for()

    # swipe: B over A, clipped left of the swipe position
    card.locator(".tbv-compare-mode").select_option("swipe")
    assert panel.locator(".tbv-panel-view").get_attribute("data-compare") == "swipe"
    wait_images_loaded(page, f'{CMP} .tbv-panel img', 2)
    box_a, box_b = side_a.bounding_box(), side_b.bounding_box()
    assert abs(box_a["x"] - box_b["x"]) < 1 and abs(box_a["y"] - box_b["y"]) < 20  # stacked
    centre = (box_a["x"] + box_a["width"] / 2, box_a["y"] + box_a["height"] / 2)
    hit = """([x, y]) => { const el = document.elementFromPoint(x, y);
        return el && el.closest('[data-side]') ? el.closest('[data-side]').dataset.side : null; }"""
    swipe = card.locator(".tbv-swipe")
    swipe.fill("0")
    assert page.evaluate(hit, list(centre)) == "b"
    swipe.fill("100")
    assert page.evaluate(hit, list(centre)) == "a"
    assert frame.locator("body").evaluate("() => localStorage.getItem('tb_viz.compareMode')") == '"swipe"'

    card.locator(".tbv-compare-toggle").click()  # back to one step
    assert panel.locator('[data-side="b"]').is_hidden()
    assert card.get_attribute("data-compare") is None


def test_global_step_slider_moves_every_card(page, live):
    url, _ = live
    frame = open_plugin_page(page, url)
    frame.locator(f'{CMP} .tbv-panel[data-step="20"] img').wait_for(timeout=30000)
    frame.locator("#tbv-link-steps").check()
    global_slider = frame.locator(".tbv-global-slider")
    global_slider.wait_for()
    global_slider.focus()
    page.keyboard.press("Home")
    frame.locator(f'{CMP}[data-step="0"]').wait_for()
    frame.locator(f'{FOLLOW}[data-step="0"]').wait_for()
    page.keyboard.press("ArrowRight")
    frame.locator(f'{CMP}[data-step="10"] .tbv-panel[data-step="10"] img').wait_for()
    assert frame.locator(FOLLOW).get_attribute("data-step") == "10"
    frame.locator("#tbv-link-steps").uncheck()
    assert frame.locator(".tbv-global").is_hidden()
