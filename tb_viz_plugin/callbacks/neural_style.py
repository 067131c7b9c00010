"""NeuralStyle: the texture statistics the network has learned, as textures and style transfer of probe images."""

from __future__ import annotations

from typing import Any, List, Optional, Sequence, Union

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from typing_extensions import override

from tb_viz_plugin.callbacks.base import RankZeroCallback, check_layer_names, check_positive, claim_tags, class_names_for
from tb_viz_plugin.callbacks.model_check import ModelInfo, convs_that_ran
from tb_viz_plugin.callbacks.feature_inversion import check_channel_stats, resolve_named_layers
from tb_viz_plugin.callbacks.probes import probe_captions
from tb_viz_plugin.log import make_tag
from tb_viz_plugin.log.neural_style import KIND, write_neural_style
from tb_viz_plugin.methods import style_transfer, texture
from tb_viz_plugin.methods.layers import one_layer
from tb_viz_plugin.methods.optvis.style import STYLE_WEIGHT
from tb_viz_plugin.methods.model_io import IO


STYLE_LAYERS = 5
"""How many convolutions the default style layers are (Gatys et al. 2016 used five)."""


def default_style_layers(convs: List[str]) -> List[str]:
    """``STYLE_LAYERS`` of ``convs`` (in forward order), evenly spaced, the first and the last among them.

    Example:
        >>> default_style_layers([f"c{i}" for i in range(20)])
        ['c0', 'c5', 'c10', 'c14', 'c19']
        >>> default_style_layers(["a", "b"])
        ['a', 'b']
    """
    if len(convs) <= STYLE_LAYERS:
        return list(convs)
    step = (len(convs) - 1) / (STYLE_LAYERS - 1)
    return [convs[round(i * step)] for i in range(STYLE_LAYERS)]


class NeuralStyle(RankZeroCallback):
    """Log Gram-matrix textures and neural style transfer (Gatys et al.) with the model being trained.

    At every logged validation epoch, each probe image (the content) is painted in the style of
    a style image: by default the next probe image (the last one takes the first's), or the
    ``style_images`` given. Style is the Gram matrices of ``style_layers``, content the raw
    features of ``content_layer``; the texture of each style image (its Gram matrices matched
    from noise) is shown too. One row per probe image, content | style | texture | result, under
    ``neural_style/<content layer>[/<name>]``, captioned with the style and content losses of
    the result and of the sources themselves. Two batches (textures, stylized images), gradients
    with respect to the images only; the model's state, ``.grad`` and the global RNG are
    untouched. Runs on rank 0 (no collective) at ``trainer.global_step``.

    Args:
        content_layer: the layer whose features are kept; ``None`` = the deepest ``Conv2d``.
        style_layers: the layers whose Gram matrices are matched; ``None`` = five ``Conv2d`` evenly
            spaced from the first to the deepest (every one when there are at most five), as Gatys
            et al. matched five (conv1_1 ... conv5_1 of VGG).
        num_images: number of probe images (ignored when ``indices`` is given).
        indices: explicit validation-set indices of the probe images.
        style_images: ``(1 or num_images, C, H, W)`` model inputs (normalised like the dataset's)
            to take the style from instead of the probe images.
        every_n_epochs: log every n-th epoch; ``None`` = the ``budget`` decides (the first and the
            last epoch, sized to it; see ``callbacks.schedule`` for short fits).
        steps: optimisation steps of each batch per logged epoch.
        style_weight: weight of the (relative) style loss against the (relative) content loss.
        class_names: label names for captions; default the module's or the dataset's, if any.
        mean: per-channel mean the dataset normalised its images with (``None`` = inputs in [0, 1]).
        std: per-channel standard deviation of that normalisation.
        seed: seed of the textures' starting noise (the callback's own generator).
        strict: re-raise errors instead of warning.
        name: appended to the tag, to tell this instance from another one at the same content layer.

    Raises:
        MisconfigurationException: bad arguments (here), or at ``setup`` a layer that is not a module
            of the model (the message lists the valid names).

    Example:
        >>> from tb_viz_plugin.demo.data import MEAN, STD
        >>> callback = NeuralStyle("model.features.10", ["model.features.2", "model.features.6"], mean=MEAN, std=STD)
        >>> callback.state_key
        "NeuralStyle{'content_layer': 'model.features.10', 'style_layers': ['model.features.2', 'model.features.6'], 'probes': 4}"
        >>> trainer = Trainer(logger=TensorBoardLogger("logs"), callbacks=[callback])  # doctest: +SKIP
    """

    _what = "neural style"
    _sizes_work = True  # its logs are sized to the budget (see callbacks.schedule)

    def __init__(
        self,
        content_layer: Optional[str] = None,
        style_layers: Optional[Union[str, Sequence[str]]] = None,
        num_images: int = 4,
        indices: Optional[Sequence[int]] = None,
        style_images: Optional[torch.Tensor] = None,
        every_n_epochs: Optional[int] = None,
        steps: int = 200,
        style_weight: float = STYLE_WEIGHT,
        class_names: Optional[Sequence[str]] = None,
        mean: Optional[Sequence[float]] = None,
        std: Optional[Sequence[float]] = None,
        seed: int = 0,
        strict: bool = False,
        name: Optional[str] = None,
        budget: Optional[float] = 0.05,
        io: IO = None,
    ) -> None:
        super().__init__(every_n_epochs, strict, num_images=num_images, indices=indices, name=name, budget=budget, io=io)
        check_positive("NeuralStyle", steps=steps)
        if content_layer is not None and (not isinstance(content_layer, str) or not content_layer):
            raise MisconfigurationException(
                f"NeuralStyle: content_layer must be None or a module name, got {content_layer!r}"
            )
        if isinstance(style_weight, bool) or not isinstance(style_weight, (int, float)) or not style_weight > 0:
            raise MisconfigurationException(f"NeuralStyle: style_weight must be a positive number, got {style_weight!r}")
        if style_images is not None and (not isinstance(style_images, torch.Tensor) or style_images.dim() != 4):
            got = tuple(style_images.shape) if isinstance(style_images, torch.Tensor) else type(style_images).__name__
            raise MisconfigurationException(f"NeuralStyle: style_images must be an (N, C, H, W) tensor, got {got}")
        self.content_layer = content_layer
        self.style_layers = check_layer_names("NeuralStyle", style_layers)
        self.style_images = None if style_images is None else style_images.detach().cpu().clone()
        self.steps = steps
        self.style_weight = float(style_weight)
        self.class_names = None if class_names is None else [str(n) for n in class_names]
        self.normalization = check_channel_stats("NeuralStyle", mean, std)
        self.seed = int(seed)
        self._content_layer = content_layer or ""
        self._style_layers: List[str] = []

    @property
    @override
    def state_key(self) -> str:
        return self._key(content_layer=self.content_layer, style_layers=self.style_layers)

    @override
    def _planned_tags(self) -> List[str]:
        return [make_tag(KIND, self._content_layer, name=self.name)]

    @override
    def setup(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", stage: str) -> None:
        (self._content_layer,) = resolve_named_layers("NeuralStyle", pl_module, one_layer(self.content_layer, "NeuralStyle"),
                                                      lambda convs: convs[-1:])  # fmt: skip
        self._style_layers = resolve_named_layers("NeuralStyle", pl_module, self.style_layers, default_style_layers)
        super().setup(trainer, pl_module, stage)

    @override
    def _check_model(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", info: ModelInfo) -> None:
        super()._check_model(trainer, pl_module, info)
        ran = convs_that_ran(pl_module, info)
        if ran and self.style_layers is None:
            self._style_layers = default_style_layers(ran)  # defaults among the convs that run (not an auxiliary head)
        if ran and self.content_layer is None and self._content_layer != ran[-1]:
            self._content_layer = ran[-1]
            claim_tags(trainer, self, self._planned_tags())

    def _log(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", writer: Any) -> None:
        images, labels, indices = self._load_probes(trainer, pl_module)
        captions = probe_captions(indices, None if labels is None else labels.tolist(),
                                  class_names_for(self.class_names, trainer, pl_module))  # fmt: skip
        if self.style_images is None:
            style = images.roll(-1, 0)
            captions = [f"{caption} in the style of {captions[(i + 1) % len(captions)]}"
                        for i, caption in enumerate(captions)]  # fmt: skip
        else:
            style = self.style_images.to(images.device, images.dtype)
        steps = self._work(self.steps)
        with self._extra_pass(trainer, pl_module, grad=True):
            stylized = style_transfer(pl_module, images, style, self._content_layer, self._style_layers, steps=steps,
                                      style_weight=self.style_weight, **self.normalization)  # fmt: skip
            textures = texture(pl_module, style.expand_as(images), self._style_layers, steps=steps, seed=self.seed,
                               **self.normalization)  # fmt: skip
        self._write_later(trainer, self._what, write_neural_style, writer, stylized, trainer.global_step, texture=textures,
                          captions=captions, name=self.name)  # fmt: skip
