"""The tab's own controls in headless Chromium: curves beside the cards, the keyboard slider, odd names.

Data is written torch-free (``tests/synthetic.py``): tiny PNG items and scalar curves.
"""

import json

import pytest

from tests.helpers import open_plugin_page, open_tab, serve_runs, wait_images_loaded
from tests.synthetic import RunWriter, filter_items, write_run

TAG = "filters/conv1"
CARD = f'.tbv-card[data-tag="{TAG}"]'
PAD, WIDTH = 4, 240  # curves.js


def loss(step):
    return 1.0 / (1.0 + step / 10.0)


SCALARS = {"loss": loss, "val_acc": lambda s: 0.3 + s / 100.0, "lr": lambda s: 0.1}


@pytest.fixture(scope="module")
def tensorboard_url(tmp_path_factory):
    logdir = str(tmp_path_factory.mktemp("tab_browser"))
    write_run(logdir, "run_a", [0, 10, 20, 30, 40], scalars=SCALARS)
    write_run(logdir, "run_b", [0, 20, 40], scalars=SCALARS)
    write_run(logdir, "__proto__", [0, 10], scalars={"loss": loss})
    with RunWriter(logdir, "run_a") as writer:  # a tag named like an Object prototype member
        writer.tb_viz("__proto__", "filters", 5, filter_items(5))
    with serve_runs(logdir, 3) as url:
        yield url


def _x(step, x0, x1):
    return PAD + (step - x0) / (x1 - x0) * (WIDTH - 2 * PAD)


def test_curves_beside_cards_marker_hover_click_and_picker(page, tensorboard_url):
    frame = open_plugin_page(page, tensorboard_url)
    card = frame.locator(CARD)
    card.locator(".tbv-curves svg").nth(1).wait_for(timeout=30000)
    curves = card.locator(".tbv-curves")
    assert curves.locator(".tbv-curve").evaluate_all("cs => cs.map(c => c.dataset.tag)") == ["loss", "val_acc"]
    svg = curves.locator('.tbv-curve[data-tag="loss"] svg')
    assert sorted(svg.locator("path.tbv-curve-line").evaluate_all("ps => ps.map(p => p.dataset.run)")) == [
        "__proto__", "run_a", "run_b"]
    x0, x1 = float(svg.get_attribute("data-x0")), float(svg.get_attribute("data-x1"))
    assert (x0, x1) == (0, 40)

    marker = svg.locator("line.tbv-curve-marker")
    assert card.get_attribute("data-step") == "40" and marker.get_attribute("data-step") == "40"
    assert float(marker.get_attribute("x1")) == pytest.approx(_x(40, x0, x1), abs=0.1)
    card.locator(".tbv-slider").focus()
    page.keyboard.press("Home")
    frame.locator(f'{CARD} .tbv-curve[data-tag="loss"] line.tbv-curve-marker[data-step="0"]').wait_for(state="attached")
    assert float(marker.get_attribute("x1")) == pytest.approx(_x(0, x0, x1), abs=0.1)
    dots = svg.locator("circle.tbv-curve-dot")
    assert dots.count() == 3  # each run's value at the marker

    box = svg.bounding_box()
    scale = box["width"] / WIDTH
    page.mouse.move(box["x"] + _x(30, x0, x1) * scale, box["y"] + box["height"] / 2)
    readout = curves.locator('.tbv-curve[data-tag="loss"]')
    frame.locator(f'{CARD} .tbv-curve[data-tag="loss"] .tbv-curve-readout[data-hover="1"]').wait_for()
    assert f"run_a: {loss(30):.4g}" in readout.get_attribute("data-readout")
    assert f"run_b: {loss(30):.4g}" in readout.get_attribute("data-readout")  # its nearest logged step

    page.mouse.click(box["x"] + _x(22, x0, x1) * scale, box["y"] + box["height"] / 2)  # nearest logged: 20
    frame.locator(f'{CARD}[data-step="20"] .tbv-panel[data-run="run_b"][data-step="20"] img').wait_for()
    assert marker.get_attribute("data-step") == "20"
    assert card.locator(".tbv-slider-value").get_attribute("data-step") == "20"

    # the picker: add lr, remembered across a reload
    frame.locator(".tbv-curves-button").click()
    frame.locator('.tbv-curve-toggle[data-tag="lr"]').check()
    card.locator('.tbv-curve[data-tag="lr"] svg').wait_for()
    assert card.locator(".tbv-curves svg").count() == 3
    stored = frame.locator("body").evaluate("() => localStorage.getItem('tb_viz.curveTags')")
    assert json.loads(stored) == ["loss", "lr", "val_acc"]
    frame = open_plugin_page(page, tensorboard_url)
    frame.locator(f'{CARD} .tbv-curve[data-tag="lr"] svg').wait_for(timeout=30000)
    assert frame.locator(CARD).locator(".tbv-curves svg").count() == 3
    assert page.dialogs == []


def test_keyboard_slider_with_step_box_and_aria_valuetext(page, tensorboard_url):
    frame = open_plugin_page(page, tensorboard_url)
    card = frame.locator(CARD)
    card.locator('.tbv-panel[data-run="run_a"][data-step="40"] img').wait_for(timeout=30000)
    slider = card.locator(".tbv-slider")
    assert slider.get_attribute("aria-valuetext") == "step 40 (5 of 5 steps)"
    slider.focus()
    page.keyboard.press("ArrowLeft")
    frame.locator(f'{CARD}[data-step="30"]').wait_for()
    assert slider.get_attribute("aria-valuetext") == "step 30 (4 of 5 steps)"
    page.keyboard.press("Home")
    frame.locator(f'{CARD}[data-step="0"]').wait_for()
    page.keyboard.press("End")
    frame.locator(f'{CARD}[data-step="40"]').wait_for()
    page.keyboard.press("PageDown")
    assert card.get_attribute("data-step") != "40"

    box = card.locator(".tbv-step-box")
    box.fill("26")
    box.press("Enter")  # the nearest logged step
    frame.locator(f'{CARD}[data-step="30"] .tbv-panel[data-run="run_a"][data-step="30"] img').wait_for()
    assert card.locator('.tbv-panel[data-run="run_b"]').get_attribute("data-step") == "20"  # nearest <= 30
    assert "nearest ≤ 30" in card.locator('.tbv-panel[data-run="run_b"] .tbv-step').inner_text()
    box.fill("-5")
    box.press("Enter")
    frame.locator(f'{CARD}[data-step="0"]').wait_for()


def test_runs_and_tags_named_like_object_members_show(page, tensorboard_url):
    frame = open_tab(page, tensorboard_url)  # inside TensorBoard: its run list comes through the bridge
    panel = frame.locator(f'{CARD} .tbv-panel[data-run="__proto__"]')
    panel.locator("img").wait_for(timeout=30000)
    assert panel.get_attribute("data-step") == "10"
    assert wait_images_loaded(page, f'{CARD} .tbv-panel[data-run="__proto__"] img', 1) == 1
    assert frame.locator('.tbv-run-toggle[data-run="__proto__"]').count() == 1
    odd = frame.locator('.tbv-card[data-tag="__proto__"]')
    odd.locator('.tbv-panel[data-run="run_a"][data-step="5"] img').wait_for()
    assert wait_images_loaded(page, '.tbv-card[data-tag="__proto__"] img', 1) == 1
    # the __proto__ run's curve is drawn too
    assert frame.locator(f'{CARD} .tbv-curve[data-tag="loss"] path[data-run="__proto__"]').count() == 1
