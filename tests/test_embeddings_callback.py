"""The Embeddings callback inside a real Trainer: what it logs, on which samples, bad settings."""

import os

import numpy as np
import pytest
import torch
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from torch.utils.data import DataLoader

from tb_viz_plugin.projector import read_tensor
from tb_viz_plugin.callbacks import Embeddings
from tb_viz_plugin.callbacks.probes import evenly_spaced
from tb_viz_plugin.methods import extract_embeddings
from tensorboard import context as tb_context

from tests.helpers import hook_count, make_plugin, tiny_module, tiny_trainer

CTX = tb_context.RequestContext()
TAG = "embeddings/net.1.input"  # the input of tiny_net's last Linear


def _items(tmp_path, step, tag=TAG):
    plugin, _ = make_plugin(str(tmp_path))
    return plugin.items_impl(CTX, "", "tiny/v0", tag, step)


def _steps(tmp_path, tag=TAG):
    plugin, _ = make_plugin(str(tmp_path))
    return plugin.tags_impl(CTX, "")["tiny/v0"][tag]["steps"]


def _projector_features(tmp_path, step, tag=TAG):
    return read_tensor(os.path.join(tmp_path, "tiny", "v0"), f"{tag}:{step:05d}")


def test_each_epoch_embeds_the_same_samples_with_the_model_s_own_features(tmp_path):
    callback = Embeddings(num_samples=12, class_names=["a", "b", "c", "d"], strict=True, every_n_epochs=1)
    module = tiny_module()
    trainer = tiny_trainer(tmp_path, [callback], max_epochs=3, limit_val_batches=1.0)
    trainer.fit(module)
    assert hook_count(module) == 0

    expected = evenly_spaced(32, 12)
    dataset = trainer.val_dataloaders.dataset
    images, labels = dataset.tensors[0][expected], dataset.tensors[1][expected]
    assert _steps(tmp_path) == [2, 4, 6]
    for step in (2, 4, 6):
        meta = _items(tmp_path, step)["meta"]
        assert meta["indices"] == expected and meta["labels"] == labels.tolist()
        assert meta["aligned"] is (step > 2) and meta["class_names"] == ["a", "b", "c", "d"]
        assert meta["projector_tensor"] == f"{TAG}:{step:05d}"
    # the last validation ran on the final weights: its features are the model's own
    features, predicted = extract_embeddings(module, images)
    np.testing.assert_allclose(_projector_features(tmp_path, 6), features.numpy(), rtol=1e-4, atol=1e-6)
    assert _items(tmp_path, 6)["meta"]["predicted"] == predicted.tolist()
    first, last = (np.array(_items(tmp_path, s)["meta"]["points"]) for s in (2, 6))
    assert not np.allclose(first, last, atol=1e-3)  # the representation did change

    state = callback.state_dict()
    assert state["probes"]["indices"] == expected and state["previous"]["indices"] == expected
    resumed = Embeddings(num_samples=12)
    resumed.load_state_dict(state)
    assert resumed.state_dict() == state


def test_limited_validation_keeps_the_samples_it_sees_and_validate_logs_in_inference_mode(tmp_path):
    callback = Embeddings(num_samples=12, projector=True, strict=True)
    module = tiny_module()
    trainer = tiny_trainer(tmp_path, [callback], max_epochs=1)  # 2 of 4 validation batches: 16 samples
    trainer.fit(module)
    seen = [i for i in evenly_spaced(32, 12) if i < 16]
    assert _items(tmp_path, 2)["meta"]["indices"] == seen
    before = _projector_features(tmp_path, 2)

    trainer.validate(module, verbose=False)  # inference mode, same global step: replaces the entry
    assert _items(tmp_path, 2)["meta"]["indices"] == seen
    np.testing.assert_allclose(_projector_features(tmp_path, 2), before, rtol=1e-4, atol=1e-6)
    with open(os.path.join(tmp_path, "tiny", "v0", "projector_config.pbtxt")) as f:
        assert f.read().count("tensor_name") == 1
    assert hook_count(module) == 0


def test_a_named_layer_embeds_its_output_averaged_over_space(tmp_path):
    trainer = tiny_trainer(tmp_path, [Embeddings(layers="net.0.2", num_samples=4, strict=True)], max_epochs=1,
                           limit_val_batches=1.0)
    trainer.fit(tiny_module())
    meta = _items(tmp_path, 2, "embeddings/net.0.2")["meta"]
    assert meta["feature_dim"] == 12 and len(meta["predicted"]) == 4  # predictions still from the head


def test_unknown_layer_fails_at_setup_listing_the_modules(tmp_path):
    trainer = tiny_trainer(tmp_path, [Embeddings(layers="fc")])
    with pytest.raises(MisconfigurationException, match=r"no module named 'fc'; valid module names: 'net', 'net.0'"):
        trainer.fit(tiny_module())


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(num_samples=0), "num_samples"),
        (dict(num_samples=200_000), "num_samples"),
        (dict(method="umap"), "method"),
        (dict(layers=3), "layer"),
        (dict(layers=["net.0", "net.1"]), "one layer"),
        (dict(every_n_epochs=0), "every_n_epochs"),
    ],
)
def test_bad_arguments_fail_at_construction(kwargs, match):
    with pytest.raises(MisconfigurationException, match=match):
        Embeddings(**kwargs)


def test_a_shuffled_validation_loader_fails_before_training(tmp_path):
    class Shuffled(type(tiny_module())):
        def val_dataloader(self):
            loader = super().val_dataloader()
            generator = torch.Generator().manual_seed(0)
            return DataLoader(loader.dataset, batch_size=8, shuffle=True, generator=generator)

    trainer = tiny_trainer(tmp_path, [Embeddings(num_samples=4)], max_epochs=2)
    with pytest.raises(MisconfigurationException, match="validation dataloader shuffles; give it shuffle=False"):
        trainer.fit(Shuffled())
    assert trainer.global_step == 0
