"""write_embeddings / log_embeddings: the Projector's files and config (read back by TensorBoard's own
Projector plugin), and the manifest the scatter view reads."""

import io
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.tensorboard import SummaryWriter
from werkzeug import test as werkzeug_test
from werkzeug import wrappers

from tb_viz_plugin.projector import read_tensor
from tb_viz_plugin import log_embeddings, write_embeddings
from tb_viz_plugin.methods import embed, knn_accuracy, procrustes_align, silhouette
from tensorboard import context as tb_context
from tensorboard.backend import application
from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
from tensorboard.plugins import base_plugin
from tensorboard.plugins.projector.projector_plugin import ProjectorPlugin

from tests.helpers import make_plugin, tiny_net

CTX = tb_context.RequestContext()
NAMES = ["circle", "square", "tri\tangle"]  # a tab must not break the metadata TSV


def _write(writer, source, features, step, *, labels=None, reference=None, method="pca", **kwargs):
    """The map of ``features`` (``methods.embed``) written by ``write_embeddings``; returns the points."""
    result = embed(features, method=method, labels=labels, reference=reference)
    write_embeddings(writer, source, result, step, labels=labels, **kwargs)
    return result.points


def _samples(n=30, dim=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    features = torch.randn(n, dim, generator=g) + 3 * torch.nn.functional.one_hot(labels, dim).float()
    predicted = labels.clone()
    predicted[:4] = (predicted[:4] + 1) % 3
    images = torch.rand(n, 3, 20, 20, generator=g)
    return features, labels, predicted, images


def _projector_client(logdir):
    """TensorBoard's own Projector plugin over ``logdir``, behind TensorBoard's WSGI app."""
    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(logdir)
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, logdir)
    plugin = ProjectorPlugin(base_plugin.TBContext(logdir=logdir, data_provider=provider))
    app = application.TensorBoardWSGI([plugin], data_provider=provider)
    client = werkzeug_test.Client(app, wrappers.Response)
    return lambda route, **query: client.get("/data/plugin/projector/" + route, query_string=query)


def _config_names(run_dir):
    with open(os.path.join(run_dir, "projector_config.pbtxt")) as f:
        return [line.split('"')[1] for line in f if line.strip().startswith("tensor_name")]


def test_projector_reads_one_entry_per_step_with_tensors_metadata_and_sprite(tmp_path):
    run_dir = str(tmp_path / "run")
    features, labels, predicted, images = _samples()
    writer = SummaryWriter(run_dir)
    for step in (0, 5, 10):
        _write(writer, "penultimate", features + step, step, labels=labels, predicted=predicted, images=images,
               to_rgb=lambda x: x, class_names=NAMES)
    _write(writer, "conv", features[:, :4], 5)  # a second tag, no extras
    writer.close()

    assert _config_names(run_dir) == [
        "embeddings/penultimate:00000", "embeddings/penultimate:00005", "embeddings/penultimate:00010",
        "embeddings/conv:00005"]
    folder = os.path.join(run_dir, "00005", "embeddings%2fpenultimate")  # where the config points
    assert sorted(os.listdir(folder)) == ["metadata.tsv", "tensors.bytes"]
    sprites = os.listdir(os.path.join(run_dir, "embeddings%2fpenultimate"))  # the same sprite: stored once
    assert len(sprites) == 1 and sprites[0].startswith("sprite-")

    get = _projector_client(str(tmp_path))
    assert json.loads(get("runs").data) == ["run"]
    info = json.loads(get("info", run="run").data)
    assert [e["tensorName"] for e in info["embeddings"]] == _config_names(run_dir)
    entry = info["embeddings"][1]  # penultimate at step 5
    assert entry["tensorShape"] == [30, 8] and entry["sprite"]["singleImageDim"] == [20, 20]

    tensor = np.frombuffer(get("tensor", run="run", name="embeddings/penultimate:00005").data, dtype=np.float32)
    np.testing.assert_allclose(tensor.reshape(30, 8), (features + 5).numpy(), rtol=1e-4)
    rows = get("metadata", run="run", name="embeddings/penultimate:00005").data.decode().splitlines()
    assert rows[0].split("\t") == ["index", "label", "predicted", "correct"]
    assert [row.split("\t") for row in rows[1:6:2]] == [
        ["0", "circle", "square", "no"], ["2", "tri angle", "circle", "no"], ["4", "square", "square", "yes"]]
    assert len(rows) == 31
    sprite = Image.open(io.BytesIO(get("sprite_image", run="run", name="embeddings/penultimate:00005").data))
    assert sprite.size == (6 * 20, 6 * 20)  # ceil(sqrt(30)) = 6 thumbnails per row, square sheet
    conv = get("metadata", run="run", name="embeddings/conv:00005").data.decode().splitlines()
    assert conv[:2] == ["0", "1"]  # a single column (the index) has no header


def test_repeated_step_and_a_second_writer_keep_one_entry_per_step(tmp_path, capsys):
    run_dir = str(tmp_path)
    features, labels, _, _ = _samples()
    writer = SummaryWriter(run_dir)
    _write(writer, "emb", features, 0, labels=labels)
    _write(writer, "emb", features, 4, labels=labels)
    _write(writer, "emb", features * 2, 4, labels=labels)  # e.g. trainer.validate() after fit
    writer.close()
    assert _config_names(run_dir) == ["embeddings/emb:00000", "embeddings/emb:00004"]
    assert "warning" not in capsys.readouterr().out
    tensors = read_tensor(run_dir, "embeddings/emb:00004")
    np.testing.assert_allclose(tensors, (features * 2).numpy(), rtol=1e-4)  # the newest files

    resumed = SummaryWriter(run_dir)  # a resumed run: a new writer on the same directory
    _write(resumed, "emb", features, 8, labels=labels)
    resumed.close()
    assert _config_names(run_dir) == ["embeddings/emb:00000", "embeddings/emb:00004", "embeddings/emb:00008"]


def test_manifest_holds_the_map_labels_quality_and_the_sprite(tmp_path):
    features, labels, predicted, images = _samples()
    writer = SummaryWriter(str(tmp_path / "run"))
    first = _write(writer, "emb", features, 1, labels=labels, predicted=predicted, images=images, class_names=NAMES,
                   indices=range(100, 130), projector=False)
    flipped = _write(writer, "emb", -features, 2, labels=labels, projector=False)
    aligned = _write(writer, "emb", -features, 3, labels=labels, reference=first, projector=False)
    writer.close()
    assert not os.path.exists(tmp_path / "run" / "projector_config.pbtxt")

    plugin, _ = make_plugin(str(tmp_path))
    answer = plugin.items_impl(CTX, "", "run", "embeddings/emb", 1)
    meta = answer["meta"]
    assert answer["kind"] == "embeddings" and meta["method"] == "pca" and meta["aligned"] is False
    assert meta["num_samples"] == 30 and meta["feature_dim"] == 8 and meta["indices"] == list(range(100, 130))
    assert meta["labels"] == labels.tolist() and meta["predicted"] == predicted.tolist()
    assert meta["class_names"] == NAMES
    np.testing.assert_allclose(meta["points"], first.numpy(), atol=1e-4)
    quality = meta["quality"]
    assert quality["knn_accuracy"] == pytest.approx(knn_accuracy(features, labels))
    assert quality["knn_accuracy_2d"] == pytest.approx(knn_accuracy(first, labels))
    assert quality["silhouette"] == pytest.approx(silhouette(features, labels))
    assert 0 < meta["explained_variance"][1] <= meta["explained_variance"][0] < 1
    (item,) = answer["items"]
    assert (item["tile"], item["columns"], item["width"], item["height"]) == (20, 6, 120, 120)  # square, as the Projector's

    # PCA's signs: negated features give the mirrored map; aligned to the previous map, the same map
    assert torch.allclose(flipped, -first, atol=1e-4)
    assert torch.allclose(aligned, first, atol=1e-4)
    assert plugin.items_impl(CTX, "", "run", "embeddings/emb", 3)["meta"]["aligned"] is True
    assert torch.allclose(procrustes_align(first), first, atol=1e-5)  # already standardised


def test_log_embeddings_extracts_the_model_s_own_features_and_aligns_steps(tmp_path):
    from tb_viz_plugin.methods import extract_embeddings

    net = tiny_net().eval()
    images = torch.randn(12, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(12) % 4
    writer = SummaryWriter(str(tmp_path / "run"))
    first = log_embeddings(writer, net, images, 0, labels=labels)
    second = log_embeddings(writer, net, -images, 1, labels=labels, reference=first, projector=False)
    conv = log_embeddings(writer, net, images, 0, layers=["0.2"], projector=False, name="conv")
    writer.close()
    features, predicted = extract_embeddings(net, images)
    plugin, _ = make_plugin(str(tmp_path))
    assert sorted(plugin.tags_impl(CTX, "")["run"]) == ["embeddings/0.2/conv", "embeddings/1.input"]
    meta = plugin.items_impl(CTX, "", "run", "embeddings/1.input", 0)["meta"]
    assert meta["predicted"] == predicted.tolist() and meta["feature_dim"] == 12 and meta["labels"] == labels.tolist()
    logged = read_tensor(os.path.join(tmp_path, "run"), "embeddings/1.input:00000")
    np.testing.assert_allclose(logged, features.numpy(), rtol=1e-4, atol=1e-6)
    assert plugin.items_impl(CTX, "", "run", "embeddings/1.input", 1)["meta"]["aligned"] is True
    assert tuple(second.shape) == (12, 2) and tuple(conv.shape) == (12, 2)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(labels=torch.zeros(5, dtype=torch.long)), "labels must have shape"),
        (dict(images=torch.zeros(5, 3, 4, 4)), "images must have shape"),
        (dict(indices=[1, 2]), "2 indices for 30 samples"),
        (dict(method="umap"), "method must be one of"),
    ],
)
def test_bad_inputs_are_refused(tmp_path, kwargs, match):
    writer = SummaryWriter(str(tmp_path))
    with pytest.raises(ValueError, match=match):
        _write(writer, "emb", torch.randn(30, 4), 0, **kwargs)
    writer.close()
