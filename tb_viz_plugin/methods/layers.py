"""Finding layers by name, where a model lives, and leaving a model's state as it was found."""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, List, Optional, Sequence, Union

import itertools

import torch
from torch import nn

_MAX_LISTED = 40


class LayerNotFoundError(ValueError):
    """A layer name that does not exist in the model, or names a module of the wrong type."""


def conv2d_layer_names(model: nn.Module) -> List[str]:
    """Names of every ``nn.Conv2d`` (subclasses included) in ``model``, in definition order."""
    return [name for name, module in model.named_modules() if isinstance(module, nn.Conv2d)]


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:_MAX_LISTED])
    more = len(names) - _MAX_LISTED
    return shown + (f", ... and {more} more" if more > 0 else "") if names else "(none)"


def resolve_layers(
    model: nn.Module,
    names: Optional[Union[str, Sequence[str]]],
    *,
    accept: Callable[[nn.Module], bool] = lambda m: isinstance(m, nn.Conv2d),
    what: str = "Conv2d layer",
    default: Callable[[List[str]], List[str]] = lambda valid: valid[:1],
) -> List[str]:
    """Check layer names against ``model`` and return them (or the default choice).

    Args:
        model: the network.
        names: one module name (``"features.0"``, ``"layer1.0.conv1"``), a sequence of names,
            or ``None`` for ``default(valid_names)`` (by default the first accepted module). A
            name that is not a full module path but the unique ending of one (``"features.0"``
            for ``"model.features.0"`` in a LightningModule holding the net as ``self.model``)
            resolves to that full path.
        accept: which modules are valid choices.
        what: how to call a valid module in error messages.
        default: picks the layers used when ``names`` is ``None``.

    Raises:
        LayerNotFoundError: a name that is not a module of ``model``, names a module that
            ``accept`` refuses, or no valid module exists. The message lists the valid names.

    Example:
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3))
        >>> resolve_layers(net, None), resolve_layers(net, "2")
        (['0'], ['2'])
        >>> resolve_layers(nn.Sequential(net), "2")
        ['0.2']
    """
    modules = dict(model.named_modules())
    valid = [name for name, module in modules.items() if name and accept(module)]
    if not valid and accept(model):
        valid = [""]
    if names is None:
        chosen = default(valid)
        if not chosen:
            raise LayerNotFoundError(f"{type(model).__name__} has no {what}; nothing to visualize")
        return list(chosen)
    if isinstance(names, str):
        names = [names]
    if not names:
        raise LayerNotFoundError(f"no layer names given; valid {what} names: {_listing(valid)}")
    resolved = []
    for name in names:
        if not isinstance(name, str):
            raise LayerNotFoundError(f"layer names must be strings, got {name!r}")
        if name not in modules:
            # A LightningModule usually wraps the network (``self.model``): accept the name the
            # network itself uses when exactly one module path ends with it; ``torch.compile``
            # adds ``_orig_mod.`` to the names below it: accept the names without it.
            plain = {full.replace("_orig_mod.", ""): full for full in modules}
            matches = [plain[name]] if name in plain else [
                full for short, full in plain.items() if short.endswith("." + name)
            ]
            if len(matches) != 1:
                hint = f" (ambiguous: {_listing(matches)})" if matches else ""
                raise LayerNotFoundError(
                    f"{type(model).__name__} has no module named {name!r}{hint}; "
                    f"valid {what} names: {_listing(valid)}"
                )
            name = matches[0]
        if name not in valid:
            raise LayerNotFoundError(
                f"module {name!r} is a {type(modules[name]).__name__}, not a {what}; "
                f"valid {what} names: {_listing(valid)}"
            )
        resolved.append(name)
    return list(dict.fromkeys(resolved))


def one_layer(layers: Optional[Union[str, Sequence[str]]], owner: str) -> Optional[str]:
    """The layer of a view that shows one: ``layers`` given as a name, a one-element list, or ``None``.

    Raises:
        ValueError: several names, or something that is not a name, naming ``owner``.

    Example:
        >>> one_layer("fc", "Embeddings"), one_layer(["fc"], "Embeddings"), one_layer(None, "Embeddings")
        ('fc', 'fc', None)
    """
    if layers is None or isinstance(layers, str):
        return layers
    names = list(layers) if isinstance(layers, (list, tuple)) else []
    if len(names) != 1 or not isinstance(names[0], str):
        raise ValueError(
            f"{owner} shows one layer: give a module name or a one-element list (one instance per layer, "
            f"each with its own name=, for several), got {layers!r}"
        )
    return names[0]


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (or buffer); the CPU for a model without either.

    Example:
        >>> model_device(nn.Linear(2, 2)), model_device(nn.ReLU())
        (device(type='cpu'), device(type='cpu'))
    """
    first = next(itertools.chain(model.parameters(), model.buffers()), None)
    return first.device if first is not None else torch.device("cpu")


def model_dtype(model: nn.Module) -> torch.dtype:
    """The floating dtype of ``model``'s first parameter (or buffer); ``float32`` when there is none.

    Example:
        >>> model_dtype(nn.Linear(2, 2).double()), model_dtype(nn.ReLU())
        (torch.float64, torch.float32)
    """
    first = next(itertools.chain(model.parameters(), model.buffers()), None)
    return first.dtype if first is not None and first.is_floating_point() else torch.float32


@contextlib.contextmanager
def preserved_training_flags(model: nn.Module, *, eval_mode: bool = True) -> Iterator[nn.Module]:
    """Run a block with ``model`` in eval mode and restore every submodule's own flag after.

    Restores per submodule (not one ``model.train()``), so submodules that the user froze in
    eval mode stay frozen.
    """
    flags = [(module, module.training) for module in model.modules()]
    try:
        if eval_mode:
            model.eval()
        yield model
    finally:
        for module, flag in flags:
            module.training = flag
