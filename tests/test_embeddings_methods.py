"""Embedding methods against reference implementations (scikit-learn, scipy) and the sprite layout."""

import math
import sys

import numpy as np
import pytest
import torch
from torch import nn

from tb_viz_plugin.methods import (
    EmbeddingCapture,
    LayerNotFoundError,
    embedding_layer,
    extract_embeddings,
    knn_accuracy,
    pca,
    procrustes_align,
    silhouette,
    tsne,
)
from tb_viz_plugin.render.embeddings import sprite, sprite_layout, thumbnails

from tests.helpers import hook_count, tiny_net


def _clusters(n_per_class=40, classes=4, dim=16, spread=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=g) * 4
    labels = torch.arange(classes).repeat_interleave(n_per_class)
    return centres[labels] + spread * torch.randn(len(labels), dim, generator=g), labels


@pytest.mark.parametrize("n_per_class,dim", [(40, 32), (5, 64)])  # covariance and Gram (N < D) paths
def test_pca_matches_scikit_learn(n_per_class, dim):
    from sklearn.decomposition import PCA

    x, _ = _clusters(n_per_class=n_per_class, dim=dim)
    scores, ratio = pca(x, k=2)
    reference = PCA(n_components=2, svd_solver="full").fit(x.double().numpy())
    expected = reference.transform(x.double().numpy())
    np.testing.assert_allclose(scores.numpy(), expected, rtol=1e-4, atol=1e-4)  # signs as scikit-learn's
    np.testing.assert_allclose(ratio.numpy(), reference.explained_variance_ratio_, rtol=1e-5)
    corr = [abs(np.corrcoef(scores[:, i].numpy(), expected[:, i])[0, 1]) for i in range(2)]
    assert min(corr) > 0.99999


def test_pca_degenerate_inputs():
    scores, ratio = pca(torch.ones(1, 5))
    assert scores.shape == (1, 2) and torch.all(scores == 0) and torch.all(ratio == 0)
    scores, ratio = pca(torch.randn(10, 1))  # rank 1: the second component is zero
    assert torch.all(scores[:, 1] == 0) and ratio[0] == pytest.approx(1.0)


def test_procrustes_undoes_rotation_reflection_scale_and_shift():
    from scipy.linalg import orthogonal_procrustes

    reference = procrustes_align(torch.randn(50, 2, generator=torch.Generator().manual_seed(1)))
    angle = 1.1
    rotation = torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    reflection = torch.tensor([[1.0, 0.0], [0.0, -1.0]])
    moved = reference @ rotation @ reflection * 7.5 + torch.tensor([3.0, -2.0])
    aligned = procrustes_align(moved, reference)
    assert torch.allclose(aligned, reference, atol=1e-5)
    # the rotation is scipy's orthogonal Procrustes solution of the standardised maps
    standard = procrustes_align(moved)
    r, _ = orthogonal_procrustes(standard.double().numpy(), reference.double().numpy())
    np.testing.assert_allclose(aligned.numpy(), standard.double().numpy() @ r, atol=1e-5)
    # standardised: centred, unit RMS radius
    assert torch.allclose(aligned.mean(0), torch.zeros(2), atol=1e-6)
    assert aligned.square().sum(1).mean().item() == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="reference of shape"):
        procrustes_align(moved, reference[:10])


def test_knn_accuracy_matches_scikit_learn_leave_one_out():
    from sklearn.model_selection import LeaveOneOut, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    x, y = _clusters(n_per_class=12, spread=4.0, seed=3)  # overlapping classes: accuracy well below 1
    expected = cross_val_score(KNeighborsClassifier(n_neighbors=5), x.double().numpy(), y.numpy(), cv=LeaveOneOut())
    assert 0.2 < expected.mean() < 0.95
    assert knn_accuracy(x, y, k=5) == pytest.approx(expected.mean())
    assert knn_accuracy(x[:1], y[:1]) is None


@pytest.mark.parametrize("spread", [0.5, 4.0])
def test_silhouette_matches_scikit_learn(spread):
    from sklearn.metrics import silhouette_score

    x, y = _clusters(spread=spread, seed=4)
    y = y.clone()
    y[0] = 9  # a class of one sample (silhouette 0 by convention) and a gap in the label values
    assert silhouette(x, y) == pytest.approx(silhouette_score(x.double().numpy(), y.numpy()), abs=1e-9)
    assert silhouette(x, torch.zeros(len(x), dtype=torch.long)) is None


def test_metrics_in_blocks_equal_one_block(monkeypatch):
    import tb_viz_plugin.methods.embeddings.quality as quality

    x, y = _clusters(spread=3.0, seed=5)
    whole = knn_accuracy(x, y), silhouette(x, y)
    monkeypatch.setattr(quality, "_CHUNK", 7)
    assert (knn_accuracy(x, y), silhouette(x, y)) == pytest.approx(whole)


def test_tsne_is_deterministic_separates_clusters_and_leaves_global_rng_alone():
    from threadpoolctl import threadpool_limits  # a scikit-learn dependency

    with threadpool_limits(1):  # OpenMP spinning on a busy 2-core machine costs 10x on 30 points
        _check_tsne()


def _check_tsne():
    x, y = _clusters(n_per_class=10, classes=3, spread=0.5)
    state = torch.get_rng_state(), np.random.get_state()[1].copy()
    first = tsne(x, seed=0)
    assert torch.equal(torch.get_rng_state(), state[0]) and np.array_equal(np.random.get_state()[1], state[1])
    assert knn_accuracy(first, y) == 1.0
    warm = tsne(x, seed=0, init=procrustes_align(first))  # warm start from the previous map
    assert torch.equal(warm, tsne(x, seed=0, init=procrustes_align(first)))
    assert knn_accuracy(warm, y) == 1.0


def test_tsne_without_scikit_learn_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.manifold", None)
    with pytest.raises(ImportError, match="pip install scikit-learn"):
        tsne(torch.randn(10, 3))


def test_default_layer_is_input_of_last_linear_and_names_are_checked():
    net = tiny_net()
    assert embedding_layer(net) == ("1", True)
    assert embedding_layer(net, "0.2") == ("0.2", False)
    with pytest.raises(LayerNotFoundError, match=r"no module named 'fc'.*'0', '0.0'"):
        embedding_layer(net, "fc")
    with pytest.raises(LayerNotFoundError, match="no Linear layer"):
        embedding_layer(nn.Sequential(nn.Conv2d(3, 4, 3)))


def test_capture_keeps_chosen_rows_and_equals_an_explicit_pass():
    net = tiny_net().eval()
    images = torch.randn(12, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    features, predicted = extract_embeddings(net, images, batch_size=5)
    with torch.no_grad():
        penultimate = net[0](images)
        logits = net[1](penultimate)
    assert torch.allclose(features, penultimate) and torch.equal(predicted, logits.argmax(1))

    with EmbeddingCapture(net, "0.2") as capture, torch.no_grad():  # a conv: averaged over space
        capture.expect(keys=[107, 103], rows=[3, 1], batch_size=4)
        net(images[:4])
        net(images[:4])  # not armed any more: nothing kept
        capture.expect(keys=[200], rows=[0], batch_size=4)
        net(images[4:7])  # wrong batch size: reported, not raised
        keys, kept, kept_predicted = capture.collect()
        assert "expected a batch of 4" in capture.error
    assert hook_count(net) == 0
    conv_out = net[0][:3](images[[3, 1]]).mean((2, 3))
    assert keys.tolist() == [107, 103] and torch.allclose(kept, conv_out, atol=1e-6)
    assert torch.equal(kept_predicted, logits[[3, 1]].argmax(1))


def test_sprite_layout_stays_within_the_projector_limit():
    for n in (1, 2, 300, 2000, 10_000, 100_000):
        thumb, columns = sprite_layout(n)
        assert columns == math.ceil(math.sqrt(n)) and thumb * columns <= 8192 and thumb >= 1
    assert sprite_layout(300) == (48, 18)
    with pytest.raises(ValueError, match="cannot fit"):
        sprite_layout(10**9)


def test_thumbnails_and_sprite_put_each_sample_in_its_cell():
    colours = torch.rand(7, 3)
    images = colours[:, :, None, None].expand(7, 3, 30, 20)  # non-square: padded to a square
    thumbs = thumbnails(images, 10)
    sheet = sprite(thumbs, columns=3)
    assert sheet.shape == (30, 30, 3) and sheet.dtype == np.uint8
    for i in range(7):
        r, c = divmod(i, 3)
        centre = sheet[r * 10 + 5, c * 10 + 5]
        np.testing.assert_allclose(centre / 255.0, colours[i].numpy(), atol=1 / 255 + 1e-6)
