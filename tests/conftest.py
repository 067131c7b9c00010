"""Fixtures shared by the suite: a headless Chromium (Debian's) and a briefly trained demo model."""

import os
import shutil

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture(scope="session")
def browser():
    """A headless Chromium driven by Playwright (skips when Debian's chromium is missing)."""
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian chromium is not installed (make test installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    """A fresh page; JavaScript dialogs (an XSS would raise one) are recorded in ``page.dialogs``."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.dialogs = []
    page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
    yield page
    context.close()



@pytest.fixture(scope="session")
def trained_demo(tmp_path_factory):
    """The demo model trained briefly (no callbacks), shared by the quality tests.

    Returns the ``train()`` result: ``model`` (ShapesModule, eval-ready), ``val_acc``, ``run_dir``...
    plus ``val_set`` (the validation ShapesDataset with masks) under the same seed.
    """
    from tb_viz_plugin.demo.data import make_splits
    from tb_viz_plugin.demo.train import train

    result = train(tmp_path_factory.mktemp("demo"), epochs=5, seed=0, callbacks=False, n_train=3000, n_val=600)
    result["val_set"] = make_splits(0, 3000, 600)[1]
    result["model"].eval()
    return result
