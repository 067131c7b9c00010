"""Probe selection shared by the callbacks: deterministic, resumable, tolerant of sample formats."""

import pytest
import torch

from tb_viz_plugin.callbacks.probes import ProbeImages, evenly_spaced


def test_evenly_spaced():
    assert evenly_spaced(10, 3) == [0, 4, 9] or evenly_spaced(10, 3) == [0, 5, 9]
    assert evenly_spaced(3, 8) == [0, 1, 2]
    assert evenly_spaced(5, 1) == [0]
    assert evenly_spaced(0, 4) == []


@pytest.mark.parametrize("form", ["tuple", "dict", "tensor"])
def test_probe_images_load_and_resume(form):
    data = [torch.full((3, 4, 4), float(i)) for i in range(20)]
    if form == "tuple":
        dataset = [(x, i % 3) for i, x in enumerate(data)]
    elif form == "dict":
        dataset = [{"image": x, "label": torch.tensor(i % 3)} for i, x in enumerate(data)]
    else:
        dataset = data
    probes = ProbeImages(num_images=4)
    images, labels, indices = probes.load(dataset, torch.device("cpu"))
    assert images.shape == (4, 3, 4, 4) and indices == evenly_spaced(20, 4)
    assert [int(images[i, 0, 0, 0]) for i in range(4)] == indices
    if form == "tensor":
        assert labels is None
    else:
        assert labels.tolist() == [i % 3 for i in indices]
    resumed = ProbeImages(num_images=4)
    resumed.load_state_dict(probes.state_dict())
    assert resumed.load(dataset[:len(dataset)], torch.device("cpu"))[2] == indices


def test_explicit_indices_are_checked():
    with pytest.raises(ValueError):
        ProbeImages(indices=[])
    with pytest.raises(IndexError, match="out of range"):
        ProbeImages(indices=[50]).load([torch.zeros(3, 2, 2)] * 5, torch.device("cpu"))
