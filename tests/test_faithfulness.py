"""Deletion / insertion against a plain reference, the random-map baseline, blur; the sanity helpers."""

import pytest
import torch
from torch import nn

from tb_viz_plugin.methods.attribution.faithfulness import (
    auc,
    blur,
    deletion_auc,
    deletion_curve,
    insertion_auc,
    insertion_curve,
    random_map,
    softmax_score,
)
from tb_viz_plugin.methods.attribution.sanity import model_randomisation, pointing_game, spearman

from tests.helpers import hook_count, tiny_net


def _images(n=3, size=8, seed=0):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _reference_curve(model, images, maps, targets, steps, start, end):
    """One image and one step at a time: the top-k pixels (stable descending order) from ``end``."""
    curves = []
    with torch.no_grad():
        for i in range(len(images)):
            order = torch.sort(maps[i].flatten(), descending=True, stable=True).indices
            points = []
            for k in range(steps + 1):
                take = torch.zeros(maps[i].numel(), dtype=torch.bool)
                take[order[: round(k * maps[i].numel() / steps)]] = True
                image = torch.where(take.view(1, *maps[i].shape), end[i], start[i])
                points.append(model(image[None]).softmax(1)[0, targets[i]])
            curves.append(torch.stack(points))
    curves = torch.stack(curves)
    trapezoid = (curves[:, 1:] + curves[:, :-1]).sum(1) / (2 * steps)
    return curves, trapezoid


def test_deletion_and_insertion_equal_a_plain_loop():
    net = tiny_net(0).eval()
    images = _images()
    maps = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(2))
    maps[0, :4] = 0.5  # ties: kept in pixel order
    targets = torch.tensor([0, 1, 3])
    steps = 5
    curve, area = _reference_curve(net, images, maps, targets, steps, images, torch.zeros_like(images))
    assert torch.allclose(deletion_curve(net, images, maps, targets, steps=steps), curve, atol=1e-6)
    assert torch.allclose(deletion_auc(net, images, maps, targets, steps=steps), area, atol=1e-6)
    small = deletion_auc(net, images, maps, targets, steps=steps, max_memory_mb=1e-6)  # chunks of one image
    assert torch.allclose(small, area, atol=1e-6)
    blurred = blur(images)
    curve, area = _reference_curve(net, images, maps, targets, steps, blurred, images)
    assert torch.allclose(insertion_curve(net, images, maps, targets, steps=steps), curve, atol=1e-6)
    assert torch.allclose(insertion_auc(net, images, maps, targets, steps=steps), area, atol=1e-6)
    # the curves start and end where they must
    probabilities = net(images).softmax(1).gather(1, targets[:, None]).squeeze(1)
    ends = insertion_curve(net, images, maps, targets, steps=steps)[:, -1]
    assert torch.allclose(ends, probabilities, atol=1e-6)


def test_a_perfect_map_beats_the_random_baseline():
    """A net that reads one pixel only: deleting that pixel first kills the score at once."""
    net = nn.Sequential(nn.Conv2d(3, 2, 1), nn.Flatten(), nn.Linear(2 * 8 * 8, 2))
    with torch.no_grad():
        net[0].weight.fill_(1.0)
        net[0].bias.zero_()
        net[2].weight.zero_()
        net[2].bias.zero_()
        net[2].weight[0, 3 * 8 + 5] = 5.0  # channel 0, pixel (3, 5)
    images = torch.ones(4, 3, 8, 8)
    perfect = torch.zeros(4, 8, 8)
    perfect[:, 3, 5] = 1.0
    targets = torch.zeros(4, dtype=torch.long)
    good, chance = deletion_auc(net, images, perfect, targets, steps=16), deletion_auc(net, images, random_map(images), targets, steps=16)
    assert (good <= chance).all() and good.mean() < chance.mean() - 0.1 and good.max() < 0.55, (good, chance)
    assert (insertion_auc(net, images, perfect, targets, steps=16, baseline=0.0) > 0.95).all()


def test_score_targets_baselines_and_errors():
    net = tiny_net(0)
    net.train()
    images = _images(2)
    maps = random_map(images, seed=3)
    logits = net.eval()(images)
    net.train()
    raw = deletion_curve(net, images, maps, steps=2, score=lambda outputs, t: outputs.gather(1, t[:, None]).squeeze(1))
    assert torch.allclose(raw[:, 0], logits.max(1).values, atol=1e-6)  # "predicted" targets, a logit score
    assert all(m.training for m in net.modules()) and hook_count(net) == 0
    with torch.inference_mode():
        inside = deletion_auc(net, images, maps, steps=2, baseline="blur")
    assert torch.allclose(inside, auc(deletion_curve(net, images, maps, steps=2, baseline="blur")))
    assert torch.allclose(softmax_score(logits, torch.tensor([1, 2])), logits.softmax(1)[[0, 1], [1, 2]])
    assert not torch.equal(random_map(images, 0), random_map(images, 1))
    for kwargs, match in [
        (dict(maps=maps[:, :4]), r"maps must be \(N, H, W\) = \(2, 8, 8\).*upsample"),
        (dict(maps=maps, steps=0), "steps must be an int >= 1"),
        (dict(maps=maps, baseline="black"), "'blur'"),
        (dict(maps=maps, targets=9), r"\[0, 4\)"),
    ]:
        with pytest.raises(ValueError, match=match):
            deletion_auc(net, images, **kwargs)
    with pytest.raises(ValueError, match="sigma must be >= 0"):
        blur(images, sigma=-1)


def test_blur_keeps_the_mean_and_smooths():
    images = _images(2, 16)
    smooth = blur(images, sigma=2.0)
    assert torch.allclose(smooth.mean((2, 3)), images.mean((2, 3)), atol=0.1)
    assert smooth.diff(dim=-1).abs().mean() < 0.3 * images.diff(dim=-1).abs().mean()
    assert torch.equal(blur(images, sigma=0), images)


def test_spearman_and_pointing_game():
    a = torch.rand(3, 5, 5, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(spearman(a, a.exp()), torch.ones(3, dtype=torch.float64))
    ties = torch.tensor([[[1.0, 1.0, 2.0, 3.0]]])
    # scipy.stats.spearmanr([1, 1, 2, 3], [4, 3, 2, 1]) = -0.9486832980505138
    assert abs(spearman(ties, torch.tensor([[[4.0, 3.0, 2.0, 1.0]]])).item() + 0.9486832980505138) < 1e-12
    assert torch.isnan(spearman(torch.ones(1, 2, 2), a[:1, :2, :2])).all()
    masks = torch.zeros(2, 5, 5, dtype=torch.bool)
    masks[:, 2, 2] = True
    maps = torch.zeros(2, 5, 5)
    maps[0, 2, 2], maps[1, 0, 0] = 1.0, 1.0
    assert pointing_game(maps, masks).tolist() == [True, False]
    assert pointing_game(maps, masks, tolerance=2).tolist() == [True, True]
    with pytest.raises(ValueError, match="both be"):
        pointing_game(maps, masks[:, :4])


def test_model_randomisation_cascades_on_a_copy_with_its_own_generator():
    net = tiny_net(0).eval()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    rng = torch.get_rng_state()
    images = _images(4, 16)
    check = model_randomisation(net, images, ["grad_cam", "saliency"], layers="0.2", seed=1)
    assert check.stages == ["1", "0.2", "0.0"]  # every module with parameters, the last to run first
    assert check.correlations["grad_cam", "0.2"].shape == (3, 4) and check.mean("saliency").shape == (3,)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in state.items())
    assert torch.equal(torch.get_rng_state(), rng)
    again = model_randomisation(net, images, ["grad_cam", "saliency"], layers="0.2", seed=1)
    assert torch.equal(again.correlations["saliency", None], check.correlations["saliency", None])
    # with the classifier randomised only, saliency changes; with everything randomised, it is far from the original
    only_top = model_randomisation(net, images, "saliency", modules=["1"])
    assert only_top.stages == ["1"] and only_top.mean("saliency")[0] < 0.99
    assert check.mean("saliency")[-1] < 0.5
    with pytest.raises(KeyError, match="no correlations"):
        check.mean("occlusion")
