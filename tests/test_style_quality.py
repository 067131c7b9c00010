"""Feature inversion, texture and neural style on the trained demo model: the objectives are met.

Run with ``-s`` to see the measured figures (also stored as junit properties).
"""

import pytest
import torch

from tb_viz_plugin.demo.data import MEAN, STD
from tb_viz_plugin.methods import invert, style_transfer, texture

pytestmark = pytest.mark.slow  # the trained demo model

CONVS = ["model.features.0", "model.features.4", "model.features.8", "model.features.12"]  # first to deepest
STYLE_LAYERS = ["model.features.2", "model.features.6", "model.features.10", "model.features.14"]  # the ReLUs
STEPS = 200


@pytest.fixture(scope="module")
def probes(trained_demo):
    val_set = trained_demo["val_set"]
    images = torch.stack([val_set[i][0] for i in (0, 150, 300, 450)])  # the callbacks' evenly spaced choice
    return trained_demo["model"].eval(), images


def test_reconstructions_meet_the_objective_and_the_first_conv_keeps_most(probes, record_property):
    model, images = probes
    result = invert(model, images, CONVS, steps=STEPS, mean=MEAN, std=STD)
    worst, mean, errors = result.distances.max(0).values, result.distances.mean(0), result.pixel_errors.mean(0)
    for layer, high, average, error in zip(CONVS, worst.tolist(), mean.tolist(), errors.tolist()):
        print(f"{layer}: relative feature distance mean {average:.3f}, max {high:.3f}; RMS pixel error {error:.3f}")
        record_property(f"distance_{layer}", round(average, 4))
        record_property(f"distance_max_{layer}", round(high, 4))
        record_property(f"pixel_error_{layer}", round(error, 4))
    # 200 steps (the callback's default): one probe image stalled at 0.24 at the deepest conv, the rest met 0.11
    assert (mean < 0.15).all() and (worst < 0.3).all(), result.distances
    assert (result.pixel_errors[:, 0] < result.pixel_errors[:, -1]).all()  # per image, not just on average
    assert errors[0] < 0.5 * errors[-1]


def test_a_texture_matches_the_gram_matrices_far_better_than_its_noise(probes, record_property):
    model, images = probes
    result = texture(model, images, STYLE_LAYERS, steps=STEPS, mean=MEAN, std=STD)
    fraction = (result.loss_end / result.loss_start).max().item()
    print(f"texture: Gram loss {result.loss_end.max():.4f} (noise {result.loss_start.min():.3f}), "
          f"at most {fraction:.2%} of the noise's")  # fmt: skip
    record_property("texture_fraction", round(fraction, 4))
    assert fraction < 0.05
    assert not torch.allclose(result.textures, result.sources, atol=0.1)  # a texture, not a copy


def test_style_transfer_takes_the_style_and_keeps_the_content(probes, record_property):
    model, images = probes
    result = style_transfer(model, images, images.roll(1, 0), "model.features.10", STYLE_LAYERS, steps=STEPS,
                            mean=MEAN, std=STD)  # fmt: skip
    style = (result.style_loss / result.style_loss_of_content).max().item()
    content = (result.content_loss / result.content_loss_of_style).max().item()
    print(f"style transfer: style loss <= {style:.1%} of the content image's, content loss <= {content:.1%} "
          "of the style image's")  # fmt: skip
    record_property("style_fraction", round(style, 4))
    record_property("content_fraction", round(content, 4))
    assert style < 0.15 and content < 0.3
