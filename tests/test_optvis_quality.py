"""Activation maximization and DeepDream on the trained demo model: the objectives are achieved, regularizers work.

Run with ``-s`` to see the measured numbers (also stored as junit properties).
"""

import pytest
import torch

from tb_viz_plugin.demo.data import CLASS_NAMES, MEAN, STD
from tb_viz_plugin.methods.optvis import deepdream, evaluate, objectives as O, param as P, render
from tb_viz_plugin.methods.optvis import transform as T

from tests.test_optvis_methods import high_frequency_fraction

pytestmark = pytest.mark.slow  # the trained demo model

STEPS = 64  # the callback's default
SIZE = 64


@pytest.fixture(scope="module")
def demo(trained_demo):
    val_set = trained_demo["val_set"]
    images = torch.stack([val_set[i][0] for i in range(len(val_set))])
    labels = torch.as_tensor(val_set.labels)
    model = trained_demo["model"].eval()
    with torch.no_grad():
        logits = torch.cat([model(chunk) for chunk in images.split(200)])
    real = torch.stack([logits[labels == c, c].mean() for c in range(len(CLASS_NAMES))])
    return {"model": model, "images": images, "labels": labels, "real_logits": real}


@pytest.fixture(scope="module")
def classes_objective():
    return O.batched([O.class_logit(c, name) for c, name in enumerate(CLASS_NAMES)])


def test_each_class_image_beats_real_images_of_its_class(demo, classes_objective, record_property):
    """The callback's defaults (multi-scale pyramid, decorrelated colour, default transforms, 64 steps, 64 px)."""
    g = torch.Generator().manual_seed(0)
    result = render(demo["model"], classes_objective, P.pyramid_image(len(CLASS_NAMES), SIZE, generator=g),
                    steps=STEPS, mean=MEAN, std=STD, generator=g)  # fmt: skip
    generated = evaluate(demo["model"], classes_objective, result.images, mean=MEAN, std=STD)  # independent check
    table = {name: (round(float(gen), 2), round(float(real), 2))
             for name, gen, real in zip(CLASS_NAMES, generated, demo["real_logits"])}  # fmt: skip
    print("class: (generated logit, mean logit of real images)", table)
    record_property("class_logits", table)
    assert (generated > demo["real_logits"]).all(), table


def test_fourier_and_jitter_lower_high_frequency_energy(demo, classes_objective, record_property):
    """Fraction of spectral energy above half Nyquist: Fourier + jitter < unregularized pixels."""
    def run(image_param, transforms):
        g = torch.Generator().manual_seed(1)
        return render(demo["model"], classes_objective, image_param(g), steps=16,
                      transforms=transforms, mean=MEAN, std=STD, generator=g).images  # fmt: skip

    n = len(CLASS_NAMES)
    pixels = run(lambda g: P.pixel_image(n, SIZE, generator=g), ())
    fourier = run(lambda g: P.fourier_image(n, SIZE, generator=g), [T.jitter(4)])
    fractions = {"pixel, no regularizer": high_frequency_fraction(pixels),
                 "fourier + jitter": high_frequency_fraction(fourier)}  # fmt: skip
    print("spectral energy above half Nyquist:", fractions)
    record_property("high_frequency_fraction", fractions)
    assert fractions["fourier + jitter"] < 0.5 * fractions["pixel, no regularizer"], fractions


def test_deepdream_boosts_the_layer_on_real_images(demo):
    probes = demo["images"][:: len(demo["images"]) // 2][:2]
    originals = (probes * torch.tensor(STD).view(1, 3, 1, 1) + torch.tensor(MEAN).view(1, 3, 1, 1)).clamp(0, 1)
    layer = "model.features.8"
    before = evaluate(demo["model"], O.energy(layer), originals, mean=MEAN, std=STD)
    dream = deepdream(demo["model"], originals, layer, mean=MEAN, std=STD)
    assert (dream.values > 1.5 * before).all(), (before, dream.values)
    change = (dream.images - originals).abs().mean().item()
    assert 0.01 < change < 0.25  # visibly changed, still the same picture
