"""Embeddings under DDP (2 CPU processes, ddp_spawn): rank 0 logs the samples of every rank."""

import os

import numpy as np
import pytest

from tb_viz_plugin.projector import read_tensor
from tb_viz_plugin.callbacks import Embeddings
from tb_viz_plugin.callbacks.probes import evenly_spaced
from tb_viz_plugin.methods import extract_embeddings
from tensorboard import context as tb_context

from tests.helpers import make_plugin, tiny_module, tiny_trainer
from tests.ddp_exit import LeaveProcessGroup


class SpawnableModule(type(tiny_module())):
    """``tiny_module``'s class under a module-level name, so that ddp_spawn can pickle it."""


@pytest.mark.slow  # two spawned processes
@pytest.mark.timeout(240)
def test_ddp_spawn_gathers_every_rank_s_shard_before_rank_zero_logs(tmp_path):
    module = SpawnableModule()
    callback = Embeddings(num_samples=10, strict=True)
    trainer = tiny_trainer(tmp_path, [callback, LeaveProcessGroup()], max_epochs=1, devices=2, strategy="ddp_spawn")
    trainer.fit(module)

    plugin, _ = make_plugin(str(tmp_path))
    ctx = tb_context.RequestContext()
    tag = "embeddings/net.1.input"
    assert plugin.tags_impl(ctx, "")["tiny/v0"][tag]["steps"] == [2]
    meta = plugin.items_impl(ctx, "", "tiny/v0", tag, 2)["meta"]
    expected = evenly_spaced(32, 10)
    # DistributedSampler gives rank 0 the even and rank 1 the odd indices: both shards are there
    assert meta["indices"] == expected and {i % 2 for i in expected} == {0, 1}
    dataset = module.val_dataloader().dataset
    images, labels = dataset.tensors[0][expected], dataset.tensors[1][expected]
    assert meta["labels"] == labels.tolist()

    features, predicted = extract_embeddings(module, images)  # the weights ddp_spawn brought back
    logged = read_tensor(os.path.join(tmp_path, "tiny", "v0"), f"{tag}:00002")
    np.testing.assert_allclose(logged, features.numpy(), rtol=1e-4, atol=1e-5)
    assert meta["predicted"] == predicted.tolist()
