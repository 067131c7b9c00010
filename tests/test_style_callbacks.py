"""FeatureInversion and NeuralStyle inside real Trainers: what they log, defaults, bad input, failures that warn."""

import math

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from tensorboard import context as tb_context

from tb_viz_plugin.callbacks import FeatureInversion, NeuralStyle

from tests.helpers import guard_side_effects, hook_count, make_plugin, tiny_module, tiny_trainer

CTX = tb_context.RequestContext()
NAMES = ["cat", "dog", "<b>owl</b>", "eel"]
STATS = dict(mean=(0.1, 0.0, -0.1), std=(1.0, 0.9, 1.1))


def _items(logdir, tag, step):
    plugin, _ = make_plugin(str(logdir))
    return plugin.items_impl(CTX, "", "tiny/v0", tag, step)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """Both callbacks (defaults for the layers, all steps: no budget) through a 2-epoch fit with the side-effect guard."""
    logdir = tmp_path_factory.mktemp("style_fit")
    violations: list = []
    pl.seed_everything(0)
    module = tiny_module()
    callbacks = [
        FeatureInversion(num_images=2, steps=3, class_names=NAMES, strict=True, budget=None, **STATS),
        NeuralStyle(num_images=2, steps=3, class_names=NAMES, strict=True, budget=None, **STATS),
    ]
    trainer = tiny_trainer(logdir, [guard_side_effects(cb, violations) for cb in callbacks], max_epochs=2)
    trainer.fit(module)
    return {"logdir": logdir, "module": module, "violations": violations}


def test_rows_per_probe_image_with_the_default_layers(fitted):
    assert fitted["violations"] == [] and hook_count(fitted["module"]) == 0
    plugin, _ = make_plugin(str(fitted["logdir"]))
    tags = plugin.tags_impl(CTX, "")["tiny/v0"]
    assert {tag: info["kind"] for tag, info in tags.items()} == {
        "feature_inversion/net.0.0+net.0.2": "feature_inversion",  # the first and the deepest Conv2d
        "neural_style/net.0.2": "neural_style",  # content at the deepest Conv2d, style at every Conv2d
    }
    assert all(t["steps"] == [2, 4] for t in tags.values())

    inversion = _items(fitted["logdir"], "feature_inversion/net.0.0+net.0.2", 4)
    assert inversion["meta"]["columns"] == ["original", "net.0.0", "net.0.2"] and inversion["meta"]["steps"] == 3
    rows = inversion["items"]
    assert len(rows) == 2 and (rows[0]["width"], rows[0]["height"]) == (3 * 16 + 4 * 2, 16 + 4)
    assert rows[0]["caption"].startswith("val #0 (") and "feature distance" in rows[0]["caption"]
    assert all(len(r["distances"]) == 2 and all(math.isfinite(d) for d in r["distances"]) for r in rows)

    style = _items(fitted["logdir"], "neural_style/net.0.2", 4)
    assert style["meta"]["style_layers"] == ["net.0.0", "net.0.2"]
    assert style["meta"]["columns"] == ["content", "style", "texture of the style", "result"]
    first = style["items"][0]
    assert (first["width"], first["height"]) == (4 * 16 + 5 * 2, 16 + 4)
    assert " in the style of val #" in first["caption"]  # image i in the style of image i + 1
    assert first["texture_loss"] < first["texture_loss_start"]


def test_user_style_images_and_a_name(tmp_path):
    style = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    callback = NeuralStyle("net.0.2", "net.0.1", num_images=2, style_images=style, steps=2, strict=True, name="mine")
    tiny_trainer(tmp_path, [callback], max_epochs=1).fit(tiny_module())
    items = _items(tmp_path, "neural_style/net.0.2/mine", 2)["items"]
    assert len(items) == 2 and "in the style of" not in items[0]["caption"]


def test_setup_rejects_unknown_layers_naming_the_valid_ones(tmp_path):
    cases = [
        (FeatureInversion(layers=["net.0.0", "net.7"]), r"FeatureInversion: .*no module named 'net.7'.*'net.0.0'"),
        (NeuralStyle("features.3"), r"NeuralStyle: .*no module named 'features.3'"),
        (NeuralStyle("net.0.2", ["net.0.1", "nope"]), r"NeuralStyle: .*no module named 'nope'"),
    ]
    for callback, match in cases:
        with pytest.raises(MisconfigurationException, match=match):
            tiny_trainer(tmp_path, [callback]).fit(tiny_module())


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: FeatureInversion(steps=0), "steps"),
        (lambda: FeatureInversion(layers=[]), "layers must be"),
        (lambda: FeatureInversion(num_images=0), "num_images"),
        (lambda: FeatureInversion(mean=(0.5, 0.5), std=(1, 1, 1)), "one number per input channel"),
        (lambda: FeatureInversion(std=(1, 0, 1)), "std > 0"),
        (lambda: NeuralStyle(content_layer=3), "content_layer"),
        (lambda: NeuralStyle(style_weight=0), "style_weight"),
        (lambda: NeuralStyle(style_images=torch.zeros(3, 8, 8)), "style_images"),
    ],
)
def test_bad_arguments_fail_at_construction(make, match):
    with pytest.raises(MisconfigurationException, match=match):
        make()


def test_one_channel_stats_are_accepted():
    assert FeatureInversion(mean=[0.5], std=[0.2]).normalization == {"mean": [0.5], "std": [0.2]}


def test_a_runtime_failure_warns_and_training_goes_on(tmp_path):
    wrong = NeuralStyle("net.0.2", "net.0.1", num_images=2, style_images=torch.rand(1, 3, 8, 8), steps=1)
    trainer = tiny_trainer(tmp_path, [wrong], max_epochs=1)
    with pytest.warns(UserWarning, match=r"NeuralStyle: neural style failed at step 2 .*style must be"):
        trainer.fit(tiny_module())
    assert trainer.state.finished
