"""The demo's synthetic shapes dataset and its CNN (fast: small datasets, no training)."""

import numpy as np
import pytest
import torch
from torch import nn

from tb_viz_plugin.demo.data import (
    CLASS_NAMES,
    COLOR_JITTER,
    COLOR_NAMES,
    NOISE,
    PALETTE,
    ShapesDataset,
    _shape_mask,
    denormalize,
    make_splits,
)
from tb_viz_plugin.demo.model import CAM_LAYER, DEEP_CONV, FIRST_CONV, ShapesCNN, ShapesModule

N = 600


@pytest.fixture(scope="module")
def ds() -> ShapesDataset:
    return ShapesDataset(N, seed=7)


def _arrays(d: ShapesDataset) -> tuple[np.ndarray, ...]:
    return d.images, d.labels, d.masks, d.color_labels


def test_same_seed_gives_bitwise_identical_data(ds):
    again = ShapesDataset(N, seed=7)
    for a, b in zip(_arrays(ds), _arrays(again)):
        assert a.dtype == b.dtype and np.array_equal(a, b)


def test_different_seed_gives_different_data(ds):
    other = ShapesDataset(N, seed=8)
    for a, b in zip(_arrays(ds), _arrays(other)):
        assert not np.array_equal(a, b)


def test_splits_are_reproducible_and_disjoint_streams():
    train_a, val_a = make_splits(0, 60, 30)
    train_b, val_b = make_splits(0, 60, 30)
    assert np.array_equal(train_a.images, train_b.images) and np.array_equal(val_a.images, val_b.images)
    assert (len(train_a), len(val_a)) == (60, 30)
    assert not np.array_equal(train_a.images[:30], val_a.images)
    assert not np.array_equal(make_splits(1, 60, 30)[0].images, train_a.images)


def test_shapes_and_dtypes(ds):
    assert ds.images.shape == (N, 64, 64, 3) and ds.images.dtype == np.uint8
    assert ds.masks.shape == (N, 64, 64) and ds.masks.dtype == np.bool_
    assert ds.labels.shape == (N,) and ds.labels.dtype == np.int64
    assert ds.color_labels.shape == (N,) and ds.color_labels.dtype == np.int64
    assert len(ds) == N
    image, label = ds[3]
    assert image.shape == (3, 64, 64) and image.dtype == torch.float32
    assert isinstance(label, int) and label == ds.labels[3]
    small = ShapesDataset(5, seed=0, size=48)
    assert small.images.shape == (5, 48, 48, 3) and small[0][0].shape == (3, 48, 48)


def test_normalisation_is_roughly_standard_and_invertible(ds):
    batch = torch.stack([ds[i][0] for i in range(200)])
    mean, std = batch.mean(dim=(0, 2, 3)), batch.std(dim=(0, 2, 3))
    assert torch.all(mean.abs() < 0.15) and torch.all((std - 1).abs() < 0.15), (mean, std)
    restored = denormalize(batch)
    assert torch.allclose(restored, torch.from_numpy(ds.images[:200]).permute(0, 3, 1, 2) / 255, atol=1e-5)


def test_all_classes_and_colours_present_and_balanced(ds):
    class_counts = np.bincount(ds.labels, minlength=len(CLASS_NAMES))
    assert class_counts.tolist() == [N // len(CLASS_NAMES)] * len(CLASS_NAMES)
    colour_counts = np.bincount(ds.color_labels, minlength=len(COLOR_NAMES))
    expected = N / len(COLOR_NAMES)
    assert colour_counts.min() > 0.6 * expected and colour_counts.max() < 1.4 * expected
    assert len(PALETTE) == len(COLOR_NAMES)


def test_masks_are_non_empty_and_fully_inside_the_image(ds):
    areas = ds.masks.sum(axis=(1, 2))
    assert areas.min() >= 40  # the smallest shape (a triangle of circumradius 8) covers ~80 px
    border = np.concatenate([ds.masks[:, 0], ds.masks[:, -1], ds.masks[:, :, 0], ds.masks[:, :, -1]], axis=1)
    assert not border.any()  # never touches the edge, so never clipped


def test_the_object_is_drawn_exactly_where_the_mask_says(ds):
    tolerance = (COLOR_JITTER + NOISE) * 255 + 1
    background_matches = []
    for image, mask, colour in zip(ds.images, ds.masks, ds.color_labels):
        distance = np.abs(image.astype(np.float32) - PALETTE[colour] * 255).max(axis=-1)
        assert distance[mask].max() <= tolerance  # every mask pixel has the shape's colour
        background_matches.append((distance[~mask] <= tolerance).mean())
    assert np.mean(background_matches) < 0.01  # and (almost) nothing else does


AREAS = {  # analytic areas of the shapes, circumradius 1
    "circle": np.pi,
    "square": 2.0,
    "triangle": 3 * np.sqrt(3) / 4,
    "star": 10 * 0.5 * 0.45 * np.sin(np.pi / 5),
    "cross": 2 * 0.6 * 1.9 - 0.6**2,
    "ring": np.pi * (1 - 0.55**2),
}


@pytest.mark.parametrize("label", range(len(CLASS_NAMES)))
def test_rasterised_shapes_have_the_analytic_area(label):
    step = 2.2 / 440
    coords = np.arange(-1.1, 1.1, step) + step / 2
    u, v = np.meshgrid(coords, coords)
    theta = 0.3  # rotation does not change the area
    mask = _shape_mask(label, u * np.cos(theta) + v * np.sin(theta), v * np.cos(theta) - u * np.sin(theta))
    assert mask.sum() * step**2 == pytest.approx(AREAS[CLASS_NAMES[label]], rel=0.02)


@pytest.mark.parametrize("num_classes", [6, 3])
def test_model_forward_gives_logits(num_classes):
    model = ShapesCNN(num_classes=num_classes)
    assert model(torch.randn(4, 3, 64, 64)).shape == (4, num_classes)


def test_model_ends_in_conv_then_gap_then_linear():
    torch.manual_seed(0)
    model = ShapesCNN().eval()
    modules = dict(model.named_modules())
    first = modules[FIRST_CONV]
    assert isinstance(first, nn.Conv2d) and first.in_channels == 3 and first.kernel_size == (5, 5)
    assert first.padding == (2, 2) and isinstance(modules[DEEP_CONV], nn.Conv2d)

    layers = list(model.features)
    last_conv = max(i for i, layer in enumerate(layers) if isinstance(layer, nn.Conv2d))
    assert all(isinstance(layer, (nn.BatchNorm2d, nn.ReLU)) for layer in layers[last_conv + 1 :])
    assert isinstance(model.pool, nn.AdaptiveAvgPool2d) and model.pool.output_size in (1, (1, 1))
    assert isinstance(model.classifier, nn.Linear)
    assert model.classifier.in_features == layers[last_conv].out_channels
    assert [name for name, _ in model.named_children()] == [CAM_LAYER, "pool", "classifier"]

    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        maps = modules[CAM_LAYER](x)  # (N, C, h, w)
        cams = torch.einsum("kc,nchw->nkhw", model.classifier.weight, maps)
        expected = cams.mean(dim=(2, 3)) + model.classifier.bias  # logits = GAP of the class maps
        assert torch.allclose(model(x), expected, atol=1e-5)


def test_lightning_module_wraps_the_cnn_as_model():
    module = ShapesModule()
    assert isinstance(module.model, ShapesCNN)
    names = dict(module.named_modules())
    assert isinstance(names[f"model.{FIRST_CONV}"], nn.Conv2d)
    assert module(torch.randn(2, 3, 64, 64)).shape == (2, len(CLASS_NAMES))
