"""Users' models and data: inputs, batches, outputs and tasks that every callback handles at its defaults.

Trainer settings and setup-time errors are in ``test_your_model_trainer.py``; the torchvision zoo
in ``test_your_model_zoo.py``.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tb_viz_plugin.callbacks import (
    ActivationMaps,
    ActivationMaximization,
    AttributionMaps,
    DeepDream,
    Embeddings,
    FilterGrid,
    TopActivations,
)
from tb_viz_plugin.methods import activation_maximization
from tb_viz_plugin.methods.model_io import ModelIO, TaskModel, class_scores, detect_task, split_batch

from tests.user_models import Samples, UserModule, manifest, run_callbacks

VIEWS = ("filters", "activation_maps", "attributions", "top_activations", "embeddings", "activation_maximization",
         "deepdream")  # fmt: skip


def small_net(channels: int = 3, outputs: int = 4) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(channels, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, outputs),
    )  # fmt: skip


def segmentation_net(classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, classes, 1))


def every_callback(io=None, **cheap):
    """Every callback at its defaults (only the costs cut: steps and probe counts)."""
    return [
        FilterGrid(),
        ActivationMaps(io=io),
        AttributionMaps(num_images=2, io=io),
        TopActivations(io=io),
        Embeddings(num_samples=16, io=io),
        ActivationMaximization(steps=2, io=io),
        DeepDream(num_images=2, steps=2, octaves=2, io=io),
    ]


def assert_every_view(tags, warnings, allowed=()):
    allowed = (*allowed, "no predicted class")  # Embeddings of a model whose task is not multiclass, said once
    for view in VIEWS:
        assert any(tag.startswith(view + "/") for tag in tags), (view, sorted(tags), warnings)
    assert all(steps == [2] or steps == [0, 2] for steps in tags.values()), tags
    assert [w for w in warnings if not any(a in w for a in allowed)] == []


# ------------------------------------------------------------------ inputs


@pytest.mark.parametrize("channels", [1, 4])
def test_any_channel_count(tmp_path, channels):
    tags, warnings = run_callbacks(tmp_path, UserModule(small_net(channels)), Samples(channels=channels), every_callback())
    assert_every_view(tags, warnings, allowed=["the inputs have 4 channels; the first three are shown"])
    assert len(warnings) == (1 if channels == 4 else 0)  # said once for all the callbacks
    shown = manifest(str(tmp_path), "activation_maximization/output")
    assert len(shown["items"]) == 4  # one image per class


def test_generated_images_have_the_models_channels_and_size():
    net = nn.Sequential(nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(6 * 14 * 14, 3))
    result = activation_maximization(net, steps=3, size=(32, 32), channels=1)  # a fixed-size head: 32 px only
    assert tuple(result.groups[0].images.shape) == (3, 1, 32, 32)
    with pytest.raises(RuntimeError):
        net(torch.zeros(1, 1, 40, 40))  # the head really is fixed-size


def test_a_fixed_size_head_and_normalisation_of_the_models_channels(tmp_path):
    torch.manual_seed(0)
    lenet = nn.Sequential(nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 5 * 5, 10))  # fmt: skip
    io = ModelIO(mean=[0.1307], std=[0.3081])
    tags, warnings = run_callbacks(tmp_path, UserModule(lenet), Samples(channels=1, size=32, classes=10),
                                   every_callback(io=io))  # fmt: skip
    assert_every_view(tags, warnings)


# ------------------------------------------------------------------ batches


def test_hugging_face_style_dict_batches_by_default(tmp_path):
    module = UserModule(small_net(), keys=("pixel_values", "labels"))
    tags, warnings = run_callbacks(tmp_path, module, Samples(form="hf"), every_callback())
    assert_every_view(tags, warnings)
    rows = manifest(str(tmp_path), "attributions/net.3/predicted")["meta"]["rows"]
    assert all(isinstance(row["label"], int) for row in rows)  # the labels key was found


def test_named_keys_and_a_split_function():
    batch = {"scan": torch.zeros(2, 1, 4, 4), "diagnosis": torch.tensor([1, 0]), "id": ["a", "b"]}
    x, y = split_batch(batch, ModelIO(inputs="scan", labels="diagnosis"))
    assert x.shape == (2, 1, 4, 4) and y.tolist() == [1, 0]
    x, y = split_batch(batch, ModelIO(inputs=lambda b: (b["scan"] * 2, None)))
    assert y is None and x.shape == (2, 1, 4, 4)
    with pytest.raises(TypeError, match=r"keys \['diagnosis', 'id', 'scan'\].*io=ModelIO\(inputs='<key>'"):
        split_batch(batch)


def test_custom_keys_in_a_trainer(tmp_path):
    class Renamed(Samples):
        def __getitem__(self, i):
            x, y = super().__getitem__(i)
            return {"scan": x, "diagnosis": y}

    module = UserModule(small_net(), keys=("scan", "diagnosis"))
    io = {"inputs": "scan", "labels": "diagnosis"}
    tags, warnings = run_callbacks(tmp_path, module, Renamed(), every_callback(io=io))
    assert_every_view(tags, warnings)


# ------------------------------------------------------------------ outputs


@pytest.mark.parametrize("output", ["tuple", "dict"])
def test_dict_and_tuple_outputs(tmp_path, output):
    tags, warnings = run_callbacks(tmp_path, UserModule(small_net(), output=output), Samples(), every_callback())
    assert_every_view(tags, warnings)
    assert "embeddings/net.6.input" in tags  # the classifier's features, not an aux head


def test_probabilities_are_not_softmaxed_twice(tmp_path):
    module = UserModule(small_net(), output="probs")
    tags, warnings = run_callbacks(tmp_path, module, Samples(), [AttributionMaps(methods=["grad_cam"], num_images=4)])
    rows = manifest(str(tmp_path), "attributions/net.3/predicted")["meta"]["rows"]
    data = Samples()
    images = torch.stack([data[row["index"]][0] for row in rows])
    with torch.no_grad():
        expected = module.eval()(images).max(1).values
    assert [row["probability"] for row in rows] == pytest.approx(expected.tolist(), abs=1e-4)


def test_a_forward_taking_the_whole_batch(tmp_path):
    class BatchForward(UserModule):
        def forward(self, batch):
            return self.net(batch["image"])

        def _loss(self, batch):
            return nn.functional.cross_entropy(self(batch), batch["label"])

    io = ModelIO(forward=lambda module, images: module({"image": images}))
    tags, warnings = run_callbacks(tmp_path, BatchForward(small_net()), Samples(form="dict"), every_callback(io=io))
    assert_every_view(tags, warnings)


# ------------------------------------------------------------------ tasks


def test_tasks_are_detected_from_outputs_and_labels():
    assert detect_task(torch.zeros(2, 5)) == "multiclass"
    assert detect_task(torch.zeros(2, 5), torch.tensor([[0, 1, 0, 0, 1]] * 2)) == "multilabel"
    assert detect_task(torch.zeros(2, 1), torch.tensor([1, 0])) == "binary"
    assert detect_task(torch.zeros(2), torch.tensor([0.3, 2.5])) == "regression"
    assert detect_task(torch.zeros(2, 3, 8, 8)) == "segmentation"
    z = torch.tensor([[1.5], [-2.0]])  # binary: two class scores whose softmax is the sigmoid
    assert class_scores(z, ModelIO(task="binary")).softmax(1)[:, 1] == pytest.approx(z.sigmoid().flatten())


def test_multilabel_shows_a_sigmoid_per_label(tmp_path):
    module = UserModule(small_net(), task="multilabel")
    tags, warnings = run_callbacks(tmp_path, module, Samples(label="multihot"), every_callback())
    assert_every_view(tags, warnings)
    rows = manifest(str(tmp_path), "attributions/net.3/predicted")["meta"]["rows"]
    data = Samples(label="multihot")
    images = torch.stack([data[row["index"]][0] for row in rows])
    with torch.no_grad():
        expected = module.eval()(images).sigmoid().max(1).values
    assert [row["probability"] for row in rows] == pytest.approx(expected.tolist(), abs=1e-4)


def test_regression_explains_the_value(tmp_path):
    module = UserModule(small_net(outputs=1), task="regression")
    tags, warnings = run_callbacks(tmp_path, module, Samples(label="float"), every_callback())
    assert_every_view(tags, warnings)
    meta = manifest(str(tmp_path), "attributions/net.3/predicted")["meta"]
    data = Samples(label="float")
    images = torch.stack([data[row["index"]][0] for row in meta["rows"]])
    with torch.no_grad():
        values = module.eval()(images).flatten()
    assert [row["probability"] for row in meta["rows"]] == pytest.approx(values.tolist(), abs=1e-4)
    assert {row["predicted_name"] for row in meta["rows"]} == {"value"}
    assert all(row["label"] is None for row in meta["rows"])  # float targets are not class labels
    occlusion = [m for m in meta["maps"] if m["method"] == "occlusion"] if "maps" in meta else []
    for entry in occlusion:
        assert entry["max"] - entry["min"] > 0  # not the all-zero map of a softmax over one output


def test_regression_occlusion_is_not_zero():
    from tb_viz_plugin.methods.attribution import attribute

    net = small_net(outputs=1)
    images = torch.randn(2, 3, 16, 16)
    result = attribute(TaskModel(net, ModelIO(task="regression")), images, ["occlusion"], task="regression")
    assert result.get("occlusion").abs().max() > 0
    with torch.no_grad():
        assert result.probabilities.flatten().tolist() == pytest.approx(net(images).flatten().tolist(), abs=1e-5)


def test_segmentation_explains_a_class_over_its_predicted_pixels(tmp_path):
    module = UserModule(segmentation_net(), task="segmentation")
    tags, warnings = run_callbacks(tmp_path, module, Samples(label="mask", classes=3), every_callback())
    assert_every_view(tags, warnings)
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    scores = class_scores(logits, ModelIO(task="segmentation"))
    predicted = logits.argmax(1)
    for k in range(3):
        expected = (logits[:, k] * (predicted == k)).flatten(1).sum(1) / 16
        assert scores[:, k].tolist() == pytest.approx(expected.tolist())
    (grad,) = torch.autograd.grad(scores[0, 1], logits)
    assert torch.equal(grad[0, 1] != 0, predicted[0] == 1) and grad[1].abs().sum() == 0


def test_task_can_be_given():
    io = ModelIO(task="regression")
    assert class_scores(torch.tensor([[0.2, 0.9]]), io).flatten().tolist() == pytest.approx([0.2, 0.9])
    with pytest.raises(ValueError, match="task must be one of"):
        ModelIO(task="ranking")
