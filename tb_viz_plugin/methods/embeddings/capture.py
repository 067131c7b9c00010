"""Features of chosen samples, captured by forward hooks during forward passes someone else runs.

:class:`EmbeddingCapture` keeps the features of chosen rows of the next forward passes (by default
the input of the last ``nn.Linear``, i.e. the penultimate features) and the predicted class (argmax
of the last ``nn.Linear``'s output). The ``Embeddings`` callback uses it on the validation loop's
own passes; :func:`extract_embeddings` runs an explicit pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple

import torch
from torch import nn

from tb_viz_plugin.methods.hooks import LayerHooks
from tb_viz_plugin.methods.layers import preserved_training_flags, resolve_layers


def _is_linear(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear)


def last_linear(model: nn.Module) -> Optional[str]:
    """Name of the last ``nn.Linear`` of ``model`` in definition order (``None`` if it has none).

    Example:
        >>> last_linear(nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)))
        '2'
    """
    names = [name for name, module in model.named_modules() if _is_linear(module)]
    return names[-1] if names else None


def embedding_layer(model: nn.Module, layer: Optional[str] = None, head: Optional[str] = None) -> Tuple[str, bool]:
    """Resolve which features to embed: ``(module name, use_its_input)``.

    Args:
        model: the network.
        layer: a module name, whose output is embedded; ``None`` for the input of ``head``, else of
            the last ``nn.Linear`` (the penultimate features of a classifier).
        head: the ``nn.Linear`` that gives the logits (see :func:`logits_head`), when known.

    Returns:
        The module name and whether its input (``True``, the default choice) or its output is used.

    Raises:
        LayerNotFoundError: ``layer`` is not a module of ``model`` (the message lists the modules),
            or ``layer`` is ``None`` and ``model`` has no ``nn.Linear``.

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(12, 5), nn.ReLU(), nn.Linear(5, 3))
        >>> embedding_layer(net), embedding_layer(net, "2")
        (('3', True), ('2', False))
    """
    if layer is None and head is not None:
        return head, True
    if layer is None:
        (name,) = resolve_layers(
            model,
            None,
            accept=_is_linear,
            what="Linear layer to take the penultimate features from (pass layer=<module name>)",
            default=lambda valid: valid[-1:],
        )
        return name, True
    (name,) = resolve_layers(model, layer, accept=lambda module: True, what="module")
    return name, False


def source_name(layer: str, uses_input: bool) -> str:
    """How the embedded features are named (in tags): the module, or ``<module>.input`` for its input.

    Example:
        >>> source_name("fc", True), source_name("features", False)
        ('fc.input', 'features')
    """
    return f"{layer}.input" if uses_input else layer


def _as_features(value: Any) -> torch.Tensor:
    """The first tensor of a hook's input/output as ``(N, D)`` float32 (spatial dims averaged)."""
    if isinstance(value, (tuple, list)):
        value = next((v for v in value if isinstance(v, torch.Tensor)), None)
    if not isinstance(value, torch.Tensor) or value.dim() < 2:
        raise TypeError(f"expected a batch tensor of at least 2 dimensions, got {type(value).__name__}")
    value = value.detach()
    if value.dim() > 2:
        value = value.flatten(2).mean(2)  # (N, C, *spatial) -> (N, C): global average pooling
    return value.float()


@dataclass
class _Pending:
    """What to keep from the next forward pass."""

    keys: torch.Tensor
    rows: Optional[torch.Tensor]
    batch_size: Optional[int]
    features_done: bool = False
    predicted_done: bool = False


class EmbeddingCapture:
    """Forward hooks keeping the features and predicted classes of chosen rows of forward passes.

    Arm it with :meth:`expect` before a forward pass: only that pass's first call of the layer
    (and of the head) is kept, only the given rows, labelled with the given keys (e.g. dataset
    indices). Nothing is kept while it is not armed, so the hooks cost nothing outside the chosen
    batches. The hooks never raise: a problem (a batch of unexpected size, an output that is not a
    tensor) is stored in :attr:`error` and capture stops until the next :meth:`expect`.

    Args:
        model: the network.
        layer: a module name whose output is embedded; ``None`` = the input of the last ``nn.Linear``.

    Attributes:
        layer: the resolved module name; ``uses_input`` whether its input is taken.
        head: the last ``nn.Linear`` whose output's argmax is the predicted class (``None`` if absent).
        error: the first problem met since the last :meth:`collect`, or ``None``.

    Raises:
        LayerNotFoundError: see :func:`embedding_layer`.

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(12, 5), nn.ReLU(), nn.Linear(5, 3))
        >>> with EmbeddingCapture(net) as capture:
        ...     capture.expect(keys=[10, 11], rows=[0, 2], batch_size=4)
        ...     _ = net(torch.randn(4, 12))
        ...     keys, features, predicted = capture.collect()
        >>> keys.tolist(), tuple(features.shape), tuple(predicted.shape)
        ([10, 11], (2, 5), (2,))
    """

    def __init__(self, model: nn.Module, layer: Optional[str] = None, head: Optional[str] = None) -> None:
        self.layer, self.uses_input = embedding_layer(model, layer, head)
        self.head = head or last_linear(model)
        self._model = model
        self._hooks: List[LayerHooks] = []
        self._pending: Optional[_Pending] = None
        self._keys: List[torch.Tensor] = []
        self._features: List[torch.Tensor] = []
        self._predicted: List[torch.Tensor] = []
        self.error: Optional[str] = None

    @property
    def source(self) -> str:
        """The features' name in tags (:func:`source_name`), e.g. ``"fc.input"``."""
        return source_name(self.layer, self.uses_input)

    # ------------------------------------------------------------------ lifecycle

    @property
    def attached(self) -> bool:
        """Whether the hooks are registered."""
        return bool(self._hooks)

    def attach(self) -> "EmbeddingCapture":
        """Register the hooks (no-op when attached)."""
        if not self._hooks:
            capture = "input" if self.uses_input else "output"
            self._hooks.append(LayerHooks(self._model, [self.layer], self._on_features, capture=capture))
            if self.head is not None:  # after the features: a pre-hook on the head itself runs before its output
                self._hooks.append(LayerHooks(self._model, [self.head], self._on_head))
        return self

    def release(self) -> None:
        """Remove the hooks and disarm (kept data stay until :meth:`collect`)."""
        for hooks in self._hooks:
            hooks.remove()
        self._hooks.clear()
        self._pending = None

    def __enter__(self) -> "EmbeddingCapture":
        return self.attach()

    def __exit__(self, *exc_info: Any) -> None:
        self.release()

    # ------------------------------------------------------------------ arming

    def expect(self, keys: Sequence[int], rows: Optional[Sequence[int]] = None, batch_size: Optional[int] = None) -> None:
        """Keep ``rows`` (all rows when ``None``) of the next forward pass, labelled ``keys``.

        ``batch_size``, when given, is checked against the pass's batch: a mismatch means the rows
        do not point at the intended samples, and is reported through :attr:`error`.
        """
        key_tensor = torch.as_tensor(list(keys), dtype=torch.long)
        row_tensor = None if rows is None else torch.as_tensor(list(rows), dtype=torch.long)
        if row_tensor is not None and len(row_tensor) != len(key_tensor):
            raise ValueError(f"{len(key_tensor)} keys for {len(row_tensor)} rows")
        self._pending = _Pending(key_tensor, row_tensor, batch_size) if len(key_tensor) else None

    def disarm(self) -> None:
        """Keep nothing from the following forward passes until the next :meth:`expect`."""
        self._pending = None

    def collect(self) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        """Everything kept since the last call, and forget it.

        Returns:
            ``(keys (M,) long on CPU, features (M, D) float32, predicted (M,) long or None)``; features
            and predictions stay on the device they were computed on. ``predicted`` is ``None``
            without a head or when not every kept row has a prediction.
        """
        keys = torch.cat(self._keys) if self._keys else torch.zeros(0, dtype=torch.long)
        features = torch.cat(self._features) if self._features else torch.zeros(0, 0)
        predicted = torch.cat(self._predicted) if self._predicted else None
        if predicted is not None and len(predicted) != len(keys):
            predicted = None
        self._keys, self._features, self._predicted = [], [], []
        self._pending = None
        return keys, features, predicted

    # ------------------------------------------------------------------ hooks

    def _take(self, batch: torch.Tensor) -> Optional[torch.Tensor]:
        pending = self._pending
        if pending.batch_size is not None and batch.shape[0] != pending.batch_size:
            raise ValueError(
                f"expected a batch of {pending.batch_size} samples at {self.layer!r}, got {batch.shape[0]}: "
                "the batch rows no longer match the dataset indices"
            )
        return batch if pending.rows is None else batch.index_select(0, pending.rows.to(batch.device))

    def _fail(self, err: Exception) -> None:
        if self.error is None:
            self.error = f"{type(err).__name__}: {err}"
        self._pending = None

    def _on_features(self, name: str, value: Any) -> None:
        pending = self._pending
        if pending is None or pending.features_done:
            return
        try:
            self._features.append(self._take(_as_features(value)))
            self._keys.append(pending.keys)
            pending.features_done = True
        except Exception as err:  # noqa: BLE001 - a hook must never break the user's forward pass
            self._fail(err)

    def _on_head(self, name: str, output: Any) -> None:
        pending = self._pending
        if pending is None or pending.predicted_done:
            return
        try:
            if isinstance(output, torch.Tensor) and output.dim() == 2:
                self._predicted.append(self._take(output.detach()).argmax(1))
            pending.predicted_done = True
        except Exception as err:  # noqa: BLE001 - a hook must never break the user's forward pass
            self._fail(err)


def extract_embeddings(
    model: nn.Module, images: torch.Tensor, layer: Optional[str] = None, batch_size: int = 256, head: Optional[str] = None
) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Features and predicted classes of ``images`` in an explicit pass (eval mode, no grad).

    Every submodule's training flag is restored after; the hooks are removed.

    Args:
        model: the network (its forward takes a batch of images).
        images: ``(N, C, H, W)`` on the model's device.
        layer: see :class:`EmbeddingCapture`.
        batch_size: images per forward pass.
        head: see :class:`EmbeddingCapture`.

    Returns:
        ``(features (N, D) float32 on CPU, predicted (N,) long on CPU or None)``.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
        >>> features, predicted = extract_embeddings(net, torch.randn(10, 3, 16, 16))
        >>> tuple(features.shape), tuple(predicted.shape)
        ((10, 8), (10,))
    """
    with EmbeddingCapture(model, layer, head) as capture, preserved_training_flags(model), torch.no_grad():
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            capture.expect(range(start, start + len(chunk)), batch_size=len(chunk))
            model(chunk)
        if capture.error is not None:
            raise RuntimeError(f"feature capture failed: {capture.error}")
        _, features, predicted = capture.collect()
    return features.cpu(), None if predicted is None else predicted.cpu()



def logits_head(model: nn.Module, inputs: torch.Tensor, io: Any = None) -> Optional[str]:
    """The ``nn.Linear`` whose output is the logits ``io`` picks from the model's output, or ``None``.

    A model returning ``(logits, aux)`` has two heads; the embedding belongs to the logits' one,
    not to the last ``nn.Linear`` defined. One forward pass of ``inputs`` (eval mode, no grad).

    Example:
        >>> class TwoHeads(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.body, self.head, self.aux = nn.Flatten(), nn.Linear(12, 3), nn.Linear(12, 2)
        ...     def forward(self, x):
        ...         return self.head(self.body(x)), self.aux(self.body(x))
        >>> logits_head(TwoHeads(), torch.zeros(2, 3, 2, 2))
        'head'
    """
    from tb_viz_plugin.methods.model_io import as_io, call_model, pick_logits

    io = as_io(io)
    outputs: dict = {}
    linears = [name for name, module in model.named_modules() if name and isinstance(module, nn.Linear)]
    if not linears:
        return None
    with LayerHooks(model, linears, lambda name, output: outputs.__setitem__(name, output)):
        with preserved_training_flags(model), torch.inference_mode(False), torch.no_grad():
            model.eval()
            logits = pick_logits(call_model(model, inputs.detach().clone(), io), io)
    return next((name for name, output in outputs.items() if output is logits), None)
