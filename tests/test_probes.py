"""Probe selection shared by the callbacks: deterministic, resumable, tolerant of sample formats."""

import pytest
import torch
from tensorboard import context as tb_context

from tb_viz_plugin.callbacks import ActivationMaps, AttributionMaps, DeepDream, Embeddings
from tb_viz_plugin.callbacks.probes import ProbeImages, evenly_spaced, probe_captions

from tests.helpers import make_plugin, tiny_module, tiny_trainer

CTX = tb_context.RequestContext()


def test_evenly_spaced():
    assert evenly_spaced(10, 3) == [0, 4, 9] or evenly_spaced(10, 3) == [0, 5, 9]
    assert evenly_spaced(3, 8) == [0, 1, 2]
    assert evenly_spaced(5, 1) == [0]
    assert evenly_spaced(0, 4) == []


@pytest.mark.parametrize("form", ["tuple", "dict", "tensor"])
def test_probe_images_load_and_resume_on_a_changed_dataset(form):
    data = [torch.full((3, 4, 4), float(i)) for i in range(30)]
    if form == "tuple":
        dataset = [(x, i % 3) for i, x in enumerate(data)]
    elif form == "dict":
        dataset = [{"image": x, "label": torch.tensor(i % 3)} for i, x in enumerate(data)]
    else:
        dataset = data
    probes = ProbeImages(num_images=4)
    images, labels, indices = probes.load(dataset[:20], torch.device("cpu"))
    assert images.shape == (4, 3, 4, 4) and indices == evenly_spaced(20, 4)
    assert [int(images[i, 0, 0, 0]) for i in range(4)] == indices
    if form == "tensor":
        assert labels is None
    else:
        assert labels.tolist() == [i % 3 for i in indices]
    resumed = ProbeImages(num_images=4)
    resumed.load_state_dict(probes.state_dict())
    assert evenly_spaced(30, 4) != indices  # the longer dataset would give other probes...
    images, _, again = resumed.load(dataset, torch.device("cpu"))
    assert again == indices and [int(images[i, 0, 0, 0]) for i in range(4)] == indices  # ...the state wins


def test_explicit_indices_are_checked():
    with pytest.raises(ValueError):
        ProbeImages(indices=[])
    with pytest.raises(IndexError, match="out of range"):
        ProbeImages(indices=[50]).load([torch.zeros(3, 2, 2)] * 5, torch.device("cpu"))


def test_probe_captions_name_the_class():
    assert probe_captions([4, 8], [1, 0], ["cat", "dog"]) == ["val #4 (dog)", "val #8 (cat)"]
    assert probe_captions([4], [1]) == ["val #4 (label 1)"] and probe_captions([4], None) == ["val #4"]


class LongerValidation(type(tiny_module())):
    """The tiny module with 40 validation samples instead of 32 (a changed dataset on resume)."""

    def val_dataloader(self):
        g = torch.Generator().manual_seed(3)
        data = torch.utils.data.TensorDataset(torch.randn(40, 3, 16, 16, generator=g), torch.randint(0, 4, (40,), generator=g))
        return torch.utils.data.DataLoader(data, batch_size=8)


def _captioned(answer):
    return [int(item["caption"].split("#")[1].split()[0].rstrip(":")) for item in answer["items"]]


READERS = {
    "ActivationMaps": (lambda: ActivationMaps(num_images=3, units=2), "activation_maps/net.0.0", _captioned),
    "AttributionMaps": (
        lambda: AttributionMaps(methods=["saliency"], num_images=3, budget=None), "attributions/input/predicted",
        lambda answer: [row["index"] for row in answer["meta"]["rows"]],
    ),  # fmt: skip
    "DeepDream": (lambda: DeepDream("net.0.2", num_images=3, octaves=1, steps=1), "deepdream/net.0.2", _captioned),
    "Embeddings": (lambda: Embeddings(num_samples=3, projector=False), "embeddings/net.1.input",
                   lambda answer: answer["meta"]["indices"]),  # fmt: skip
}


@pytest.mark.parametrize("name", list(READERS))
def test_a_resumed_fit_on_a_changed_validation_set_shows_the_checkpoint_s_probes(tmp_path, name):
    make, tag, read = READERS[name]
    first = make()
    trainer = tiny_trainer(tmp_path, [first], max_epochs=1, limit_val_batches=1.0)
    trainer.fit(tiny_module())
    original = first.state_dict()["probes"]["indices"]
    assert original == evenly_spaced(32, 3) != evenly_spaced(40, 3)
    checkpoint = tmp_path / "epoch1.ckpt"
    trainer.save_checkpoint(checkpoint)

    resumed = make()  # a fresh callback: without the checkpoint it would pick evenly_spaced(40, 3)
    tiny_trainer(tmp_path, [resumed], max_epochs=2, limit_val_batches=1.0).fit(LongerValidation(), ckpt_path=str(checkpoint))
    assert resumed.state_dict()["probes"]["indices"] == original
    plugin, _ = make_plugin(str(tmp_path))
    assert plugin.tags_impl(CTX, "")["tiny/v0"][tag]["steps"] == [2, 4]  # 2 training batches per epoch
    assert read(plugin.items_impl(CTX, "", "tiny/v0", tag, 4)) == original
