"""Do the maps mean something? The pointing game and the model-randomisation sanity check on the demo.

Both use the briefly trained demo model of the ``trained_demo`` fixture and its validation shapes,
whose object masks are known. Set ``TB_VIZ_REPORT=1`` to print the figures.
"""

import os

import pytest
import torch

from tb_viz_plugin.demo.model import CAM_LAYER, ShapesModule
from tb_viz_plugin.methods import attribute
from tb_viz_plugin.methods.attribution.sanity import model_randomisation

pytestmark = pytest.mark.slow  # the trained demo model

CHUNK = 200


def _report(text: str) -> None:
    if os.environ.get("TB_VIZ_REPORT"):
        print(text)


def _hit_rate(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor) -> float:
    """Fraction of images whose Grad-CAM maximum (true class) lies inside the object mask."""
    hits = []
    for start in range(0, len(images), CHUNK):
        window = slice(start, start + CHUNK)
        maps = attribute(model, images[window], "grad_cam", targets=labels[window], layers=CAM_LAYER).maps[0].values
        hits.append(masks[window].flatten(1).gather(1, maps.flatten(1).argmax(1, keepdim=True)))
    return torch.cat(hits).float().mean().item()


def test_pointing_game_trained_beats_untrained(trained_demo):
    val_set = trained_demo["val_set"]
    images = torch.stack([val_set[i][0] for i in range(len(val_set))])
    labels, masks = torch.from_numpy(val_set.labels), torch.from_numpy(val_set.masks)
    trained = _hit_rate(trained_demo["model"].model, images, labels, masks)
    with torch.random.fork_rng():
        torch.manual_seed(1)
        untrained = _hit_rate(ShapesModule().model.eval(), images, labels, masks)
    area = masks.float().mean().item()
    _report(f"pointing game, Grad-CAM @ {CAM_LAYER}, {len(images)} images (mask area {area:.3f}): "
            f"trained {trained:.3f} (val acc {trained_demo['val_acc']:.3f}), untrained {untrained:.3f}")  # fmt: skip
    assert trained >= untrained + 0.25 and trained >= 2 * area, (trained, untrained, area)


def test_maps_change_when_the_top_layers_are_randomised(trained_demo):
    """Adebayo et al. 2018: a map that survives re-initialising the top layers does not explain the model."""
    net = trained_demo["model"].model
    val_set = trained_demo["val_set"]
    images = torch.stack([val_set[i][0] for i in range(0, len(val_set), len(val_set) // 50)])
    methods = ["grad_cam", "guided_grad_cam", "guided_backprop"]
    check = model_randomisation(net, images, methods, modules=["classifier", "features.12", "features.13"], layers="features")
    correlation = {m: check.mean(m)[-1].item() for m in methods}  # after the whole cascade
    _report("rank correlation before/after re-initialising classifier + last conv block: "
            + ", ".join(f"{m} {c:.3f}" for m, c in correlation.items()))  # fmt: skip
    assert correlation["grad_cam"] < 0.5 and correlation["guided_grad_cam"] < 0.6, correlation
    # guided backprop is known to be largely insensitive to the top layers (the paper's finding)
    assert correlation["guided_backprop"] > correlation["grad_cam"], correlation
