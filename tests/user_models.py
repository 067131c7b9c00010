"""Users' setups for tests: synthetic samples in the shapes users have, and a LightningModule around any net.

``Samples`` gives tuples, dicts (``image``/``label`` or Hugging Face's ``pixel_values``/``labels``)
or bare tensors, with class, multi-hot, binary, float or mask labels, at any channel count.
``UserModule`` wraps a net and returns its output as a tensor, a ``(logits, aux)`` tuple, a dict or
probabilities, with the loss of its task. ``run_callbacks`` fits one short epoch and returns the tags
written and the warnings raised.
"""

from __future__ import annotations

import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.loggers import TensorBoardLogger
from torch import nn
from torch.utils.data import DataLoader, Dataset



class Samples(Dataset):
    """``n`` deterministic samples of ``(channels, size, size)`` images.

    Args:
        form: ``"tuple"`` ``(x, y)``, ``"dict"`` ``{"image", "label"}``, ``"hf"``
            ``{"pixel_values", "labels", "id"}``, ``"tensor"`` (no label).
        label: ``"class"`` (int < classes), ``"multihot"`` ``(classes,)``, ``"binary"`` (0/1 int),
            ``"float"`` (a regressed value ``(1,)``), ``"mask"`` ``(size, size)`` class indices.
    """

    def __init__(self, n: int = 16, channels: int = 3, size: int = 32, classes: int = 4, form: str = "tuple",
                 label: str = "class", seed: int = 0) -> None:  # fmt: skip
        generator = torch.Generator().manual_seed(seed)
        self.images = torch.randn(n, channels, size, size, generator=generator)
        self.classes = torch.randint(0, classes, (n,), generator=generator)
        self.form, self.label, self.num_classes = form, label, classes

    def __len__(self) -> int:
        return len(self.images)

    def _label(self, i: int) -> Any:
        c = int(self.classes[i])
        if self.label == "class":
            return c
        if self.label == "binary":
            return c % 2
        if self.label == "multihot":
            return (torch.arange(self.num_classes) <= c).float()
        if self.label == "float":
            return self.images[i].mean().reshape(1)
        if self.label == "mask":
            return (self.images[i, 0] > 0).long() * c
        raise ValueError(self.label)

    def __getitem__(self, i: int) -> Any:
        x = self.images[i]
        if self.form == "tensor":
            return x
        if self.form == "dict":
            return {"image": x, "label": self._label(i)}
        if self.form == "hf":
            return {"pixel_values": x, "labels": self._label(i), "id": i}
        return x, self._label(i)


class UserModule(pl.LightningModule):
    """``net`` in a LightningModule whose forward returns ``output`` and whose loss fits ``task``.

    Args:
        output: ``"tensor"``, ``"tuple"`` (logits, aux), ``"dict"`` ``{"aux", "logits"}``, ``"probs"`` (softmax).
        task: ``"multiclass"``, ``"multilabel"``, ``"binary"``, ``"regression"``, ``"segmentation"``.
        keys: the batch's input and label keys (dict batches).
    """

    def __init__(self, net: nn.Module, output: str = "tensor", task: str = "multiclass",
                 keys: Tuple[str, str] = ("image", "label")) -> None:  # fmt: skip
        super().__init__()
        self.net, self.output, self.task, self.keys = net, output, task, keys

    def forward(self, x: torch.Tensor) -> Any:
        logits = self.net(x)
        if self.output == "tuple":
            return logits, logits.detach() * 0
        if self.output == "dict":
            return {"aux": logits.detach()[:, :1] * 0, "logits": logits}
        if self.output == "probs":
            return logits.softmax(1)
        return logits

    def _split(self, batch: Any) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        if isinstance(batch, dict):
            return batch[self.keys[0]], batch.get(self.keys[1])
        if isinstance(batch, torch.Tensor):
            return batch, None
        return batch[0], batch[1]

    def _loss(self, batch: Any) -> torch.Tensor:
        x, y = self._split(batch)
        out = self(x)
        logits = out[0] if isinstance(out, tuple) else out["logits"] if isinstance(out, dict) else out
        if y is None:
            return logits.float().pow(2).mean()
        if self.output == "probs":
            return F.nll_loss(logits.clamp_min(1e-9).log(), y)
        if self.task == "multilabel":
            return F.binary_cross_entropy_with_logits(logits, y.float())
        if self.task == "binary":
            return F.binary_cross_entropy_with_logits(logits.flatten(), y.float())
        if self.task == "regression":
            return F.mse_loss(logits.float().view(len(y), -1), y.float().view(len(y), -1))
        return F.cross_entropy(logits, y)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._loss(batch)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.log("val_loss", self._loss(batch))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def loaders(data: Dataset, batch_size: int = 8) -> Tuple[DataLoader, DataLoader]:
    return DataLoader(data, batch_size=batch_size), DataLoader(data, batch_size=batch_size)


def run_callbacks(tmp_path: Any, module: pl.LightningModule, data: Dataset, callbacks: Sequence[pl.Callback],
                  batch_size: int = 8, **trainer_args: Any) -> Tuple[Dict[str, List[int]], List[str]]:  # fmt: skip
    """Fit with ``callbacks``; ``({tag: [steps]}, [warning messages about tb-viz])``."""
    settings = dict(max_epochs=1, limit_train_batches=2, limit_val_batches=2, enable_progress_bar=False,
                    enable_model_summary=False, enable_checkpointing=False, num_sanity_val_steps=0,
                    logger=TensorBoardLogger(str(tmp_path), name="", version=""))  # fmt: skip
    settings.update(trainer_args)
    trainer = pl.Trainer(default_root_dir=str(tmp_path), callbacks=list(callbacks), **settings)
    train, val = loaders(data, batch_size)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(module, train, val)
    messages = [str(w.message) for w in caught if _ours(str(w.message))]
    return logged_tags(str(tmp_path)), messages


def _ours(message: str) -> bool:
    names = ("tb-viz", "FilterGrid", "ActivationMaps", "AttributionMaps", "TopActivations", "Embeddings",
             "ActivationMaximization", "DeepDream", "NetworkDissection", "FeatureInversion", "NeuralStyle")  # fmt: skip
    return any(message.startswith(name) for name in names)


def logged_tags(logdir: str) -> Dict[str, List[int]]:
    """``{tag: sorted steps}`` of every tb-viz tag written under ``logdir``."""
    from tensorboard.backend.event_processing import plugin_event_multiplexer

    from tb_viz_plugin import summary

    multiplexer = plugin_event_multiplexer.EventMultiplexer(tensor_size_guidance={summary.PLUGIN_NAME: 0})
    multiplexer.AddRunsFromDirectory(logdir)
    multiplexer.Reload()
    tags: Dict[str, List[int]] = {}
    for run in multiplexer.Runs():
        for tag in multiplexer.PluginRunToTagToContent(summary.PLUGIN_NAME).get(run, {}):
            tags[tag] = sorted(e.step for e in multiplexer.Tensors(run, tag))
    return tags


def manifest(logdir: str, tag: str, step: Optional[int] = None) -> Dict[str, Any]:
    """The manifest of ``tag`` at ``step`` (default the last) in the one run under ``logdir``."""
    from tensorboard.backend.event_processing import plugin_event_multiplexer
    from tensorboard.util import tensor_util

    from tb_viz_plugin import summary

    multiplexer = plugin_event_multiplexer.EventMultiplexer(tensor_size_guidance={summary.PLUGIN_NAME: 0})
    multiplexer.AddRunsFromDirectory(logdir)
    multiplexer.Reload()
    for run in multiplexer.Runs():
        if tag in multiplexer.PluginRunToTagToContent(summary.PLUGIN_NAME).get(run, {}):
            events = multiplexer.Tensors(run, tag)
            event = events[-1] if step is None else next(e for e in events if e.step == step)
            return summary.parse_manifest(tensor_util.make_ndarray(event.tensor_proto)[0])
    raise KeyError(tag)
