"""Callbacks never change training: for every callback, bitwise-equal weights and untouched .grad, RNG, flags, hooks.

One parametrized test over every callback (alone, and all of them together under bf16 autocast),
each hook of the callback wrapped by ``guard_side_effects``; the demo's own callbacks on the demo
model are the slow case. A second test checks that the callbacks hand the ``write_*`` functions
detached CPU tensors only (what lets the writing move to a worker thread), on a GPU when there is one.
"""

import dataclasses

import pytest
import pytorch_lightning as pl
import torch

from tb_viz_plugin.callbacks import (
    ActivationMaps,
    ActivationMaximization,
    AttributionMaps,
    DeepDream,
    Embeddings,
    FeatureInversion,
    FilterGrid,
    NetworkDissection,
    NeuralStyle,
    TopActivations,
)

from tests.helpers import guard_side_effects, hook_count, tiny_module, tiny_trainer

EVERY_ATTRIBUTION = ["cam", "grad_cam_plus_plus", "layer_cam", "guided_grad_cam", "saliency", "guided_backprop",
                     "smooth_grad", "integrated_gradients", "occlusion"]  # fmt: skip
CALLBACKS = {
    "FilterGrid": lambda: FilterGrid(layers=["net.0.0", "net.0.2"]),
    "ActivationMaps": lambda: ActivationMaps(layers=["net.0.1", "net.0.3"], num_images=2, units=4),
    "TopActivations": lambda: TopActivations(layers=["net.0.1", "net.0.3"], units=3, k=3, unit_occlusion={"k": 2}),
    "AttributionMaps": lambda: AttributionMaps(
        methods=EVERY_ATTRIBUTION, num_images=2,
        options={"smooth_grad": {"samples": 2}, "integrated_gradients": {"steps": 2}, "occlusion": {"window": 8}},
        faithfulness={"steps": 2},
    ),  # fmt: skip
    "Embeddings": lambda: Embeddings(num_samples=8),
    "ActivationMaximization": lambda: ActivationMaximization(units={"net.0.2": [0, 11]}, steps=2, size=16),
    "DeepDream": lambda: DeepDream("net.0.2", num_images=2, octaves=2, steps=2),
    "NetworkDissection": lambda: NetworkDissection(layers=["net.0.1", "net.0.3"], top_k=2),
    "FeatureInversion": lambda: FeatureInversion(layers=["net.0.0", "net.0.3"], num_images=2, steps=2),
    "NeuralStyle": lambda: NeuralStyle("net.0.2", ["net.0.1", "net.0.3"], num_images=2, steps=2),
}
CASES = [pytest.param([name], "32-true", id=name) for name in CALLBACKS]
CASES.append(pytest.param(list(CALLBACKS), "bf16-mixed", id="all-bf16"))


class NoHooksWhileTraining(pl.Callback):
    """Records the hooks on the module at every training batch (the callbacks hook validation only)."""

    def __init__(self) -> None:
        self.counts: list = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.counts.append(hook_count(pl_module))


def _fit(root, callbacks, precision):
    pl.seed_everything(0)
    module = tiny_module()
    tiny_trainer(root, callbacks, max_epochs=2, precision=precision).fit(module)
    return module


@pytest.fixture(scope="module")
def baselines(tmp_path_factory):
    """The tiny module trained without callbacks, per precision (trained on first use)."""
    cache = {}

    def get(precision):
        if precision not in cache:
            cache[precision] = _fit(tmp_path_factory.mktemp(f"baseline-{precision}"), [], precision)
        return cache[precision]

    return get


def _assert_same_training(baseline, trained):
    a, b = baseline.state_dict(), trained.state_dict()
    assert list(a) == list(b)
    for name in a:
        assert torch.equal(a[name], b[name]), name
    for p, q in zip(baseline.parameters(), trained.parameters()):
        assert (p.grad is None) == (q.grad is None) and (p.grad is None or torch.equal(p.grad, q.grad))
    assert hook_count(trained) == 0


@pytest.mark.parametrize("names,precision", CASES)
def test_training_is_bitwise_unchanged(tmp_path, baselines, names, precision):
    violations: list = []
    spy = NoHooksWhileTraining()
    callbacks = [guard_side_effects(CALLBACKS[name](), violations) for name in names]
    for callback in callbacks:
        callback.strict = True  # a failure must fail the test, not turn into a warning
    trained = _fit(tmp_path, [*callbacks, spy], precision)
    assert violations == []
    assert spy.counts and set(spy.counts) == {0}
    _assert_same_training(baselines(precision), trained)
    assert any(tmp_path.glob("tiny/v0/events.out.tfevents.*"))


@pytest.mark.slow
def test_the_demo_trains_bitwise_equal_with_every_demo_callback(tmp_path):
    from tb_viz_plugin.demo.train import demo_callbacks, train

    short = dict(epochs=2, seed=3, n_train=512, n_val=256, limit_train_batches=4, limit_val_batches=2)
    baseline = train(tmp_path / "without", callbacks=False, **short)
    violations: list = []
    guarded = [guard_side_effects(callback, violations) for callback in demo_callbacks()]
    with_viz = train(tmp_path / "with", callbacks=False, extra_callbacks=guarded, **short)
    assert violations == []
    _assert_same_training(baseline["model"], with_viz["model"])
    assert any(with_viz["run_dir"].glob("events.out.tfevents.*"))
    assert baseline["checkpoint"].is_file() and with_viz["checkpoint"].is_file()


def test_the_guard_catches_violations(tmp_path):
    class Careless(pl.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            torch.randn(1)
            pl_module.train()
            pl_module(torch.zeros(1, 3, 8, 8)).sum().backward()
            pl_module.net[1].register_forward_hook(lambda *a: None)

    violations: list = []
    module = tiny_module()
    module.net[0].eval()  # a frozen submodule that pl_module.train() wrongly flips
    tiny_trainer(tmp_path, [guard_side_effects(Careless(), violations)], max_epochs=1).fit(module)
    joined = " ".join(violations)
    for expected in (".grad", "global torch RNG", "training flags", "hooks"):
        assert expected in joined, violations


def _tensors(value):
    """Every tensor inside ``value`` (dataclasses, mappings and sequences included)."""
    if isinstance(value, torch.Tensor):
        yield value
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for field in dataclasses.fields(value):
            yield from _tensors(getattr(value, field.name))
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)


def test_callbacks_hand_the_writers_detached_cpu_tensors(tmp_path, monkeypatch):
    """What the writers get is detached and on the CPU, so that writing can leave the training thread."""
    import importlib

    calls = []
    modules = {
        "filter_grid": "write_filters", "activation_maps": "write_activation_maps",
        "top_activations": "write_top_activations", "attributions": "write_attributions",
        "embeddings": "write_embeddings", "activation_maximization": "write_activation_maximization",
        "deepdream": "write_deepdream", "network_dissection": "write_network_dissection",
        "deepdream": "write_deepdream", "feature_inversion": "write_feature_inversion",
        "neural_style": "write_neural_style",
    }  # fmt: skip
    for module_name, function in modules.items():
        module = importlib.import_module(f"tb_viz_plugin.callbacks.{module_name}")
        original = getattr(module, function)

        def spy(*args, _original=original, _name=function, **kwargs):
            calls.append((_name, [t for t in _tensors((args, kwargs))]))
            return _original(*args, **kwargs)

        monkeypatch.setattr(module, function, spy)
    accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    callbacks = [CALLBACKS[name]() for name in CALLBACKS]
    for callback in callbacks:
        callback.strict = True
    trainer = tiny_trainer(tmp_path, callbacks, max_epochs=1, accelerator=accelerator)
    trainer.fit(tiny_module())
    assert sorted({name for name, _ in calls}) == sorted(modules.values())
    for name, tensors in calls:
        assert tensors, name
        assert all(t.device.type == "cpu" and not t.requires_grad for t in tensors), name
