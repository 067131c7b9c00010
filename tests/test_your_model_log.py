"""Plain-PyTorch `log_top_activations` / `log_embeddings` with `io=`: batches as dicts, outputs as tuples, inference mode."""

import torch
from torch import nn
from torch.utils.tensorboard import SummaryWriter
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tb_viz_plugin.log import log_embeddings, log_top_activations


class TupleNet(nn.Module):
    """A 1-channel net whose forward returns ``(logits, aux)``."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(8, 4)
        self.aux = nn.Linear(8, 2)

    def forward(self, x):
        pooled = self.pool(self.features(x)).flatten(1)
        return self.head(pooled), self.aux(pooled)


def _tags(logdir):
    return EventAccumulator(str(logdir)).Reload().Tags()["tensors"]


def test_top_activations_take_dict_batches_named_by_io(tmp_path):
    torch.manual_seed(0)
    net = TupleNet().eval()
    batches = [{"pixel_values": torch.rand(6, 1, 16, 16), "labels": torch.arange(6) % 4} for _ in range(3)]
    with SummaryWriter(tmp_path) as writer, torch.inference_mode():
        tags = log_top_activations(writer, net, batches, 0, "features.2", units=3, k=2,
                                   io={"inputs": "pixel_values", "labels": "labels"})  # fmt: skip
    assert tags == ["top_activations/features.2"]
    assert "top_activations/features.2" in _tags(tmp_path)


def test_embeddings_pick_the_logits_of_a_tuple_output_under_inference_mode(tmp_path):
    torch.manual_seed(0)
    net = TupleNet().eval()
    images, labels = torch.rand(12, 1, 16, 16), torch.arange(12) % 4
    with SummaryWriter(tmp_path) as writer, torch.inference_mode():
        points = log_embeddings(writer, net, images, 0, labels=labels, io={"logits": 0}, projector=False)
    assert points.shape == (12, 2) and torch.isfinite(points).all()
    assert any(tag.startswith("embeddings/head.input") for tag in _tags(tmp_path))


def test_the_embeddings_callback_takes_the_logits_head_not_the_last_linear(tmp_path):
    """A ``(logits, aux)`` forward whose aux Linear is defined last: the penultimate features of the logits' head."""
    from tb_viz_plugin.callbacks import Embeddings
    from tests.user_models import Samples, UserModule, run_callbacks

    class LateAux(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.head = nn.Linear(8, 4)
            self.aux = nn.Linear(8, 2)

        def forward(self, x):
            features = self.body(x)
            return self.head(features), self.aux(features)

    module = UserModule(LateAux(), output="tensor")
    module.forward = lambda x: module.net(x)  # the net's own (logits, aux) output
    tags, warnings = run_callbacks(tmp_path, module, Samples(), [Embeddings(num_samples=8, every_n_epochs=1)])
    assert "embeddings/net.head.input" in tags, (sorted(tags), warnings)
