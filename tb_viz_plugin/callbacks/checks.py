"""Argument checks every tb-viz callback shares: each raises ``MisconfigurationException`` naming the callback."""

from __future__ import annotations

import contextlib
from typing import Any, Dict, Iterator, List, Optional, Sequence, Union

import pytorch_lightning as pl
from torch import nn
from pytorch_lightning.utilities.exceptions import MisconfigurationException

from tb_viz_plugin.callbacks.probes import first_val_loader
from tb_viz_plugin.methods import LayerNotFoundError, activation_layers, check_units, find_class_names


@contextlib.contextmanager
def misconfiguration(owner: str, *errors: type) -> Iterator[None]:
    """Re-raise ``errors`` (default ``ValueError``) as ``MisconfigurationException`` naming ``owner``.

    Lightning reports a ``MisconfigurationException`` raised in ``__init__`` or ``setup`` as the
    user's configuration error; the original error stays chained.
    """
    try:
        yield
    except (errors or (ValueError,)) as err:
        raise MisconfigurationException(f"{owner}: {err}") from err


def check_positive(owner: str, **values: Any) -> None:
    """Raise ``MisconfigurationException`` for any value that is not a positive integer."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise MisconfigurationException(f"{owner}: {name} must be a positive integer, got {value!r}")


def check_layer_names(owner: str, layers: Optional[Union[str, Sequence[str]]]) -> Optional[Union[str, list]]:
    """``layers`` as given (``None``, a name, or a non-empty list of names).

    Raises:
        MisconfigurationException: anything else, naming ``owner``.
    """
    if layers is None or isinstance(layers, str):
        return layers
    names = list(layers)
    if not names or not all(isinstance(n, str) for n in names):
        raise MisconfigurationException(
            f"{owner}: layers must be None, a module name or a non-empty list of names, got {layers!r}"
        )
    return names


def check_normalization(
    owner: str, mean: Optional[Sequence[float]], std: Optional[Sequence[float]]
) -> Dict[str, Optional[List[float]]]:
    """``{"mean": [...], "std": [...]}`` as float lists (or ``None``), checked.

    Their length is checked against the model's input channels before the first step.

    Raises:
        MisconfigurationException: not per-channel numbers, a standard deviation <= 0, or a
            ``mean`` and ``std`` of different lengths.
    """
    checked: Dict[str, Optional[List[float]]] = {}
    for name, values in (("mean", mean), ("std", std)):
        if values is None:
            checked[name] = None
            continue
        try:
            floats = [float(v) for v in values]
        except (TypeError, ValueError):
            floats = []
        if not floats or (name == "std" and min(floats) <= 0):
            raise MisconfigurationException(
                f"{owner}: {name} must be None or per-channel numbers (std > 0), got {values!r}"
            )
        checked[name] = floats
    if checked["mean"] is not None and checked["std"] is not None and len(checked["mean"]) != len(checked["std"]):
        raise MisconfigurationException(f"{owner}: mean and std need as many numbers (one per channel), got {mean!r} and {std!r}")
    return checked


def resolve_activation_layers(
    owner: str,
    pl_module: "pl.LightningModule",
    layers: Optional[Union[str, Sequence[str]]],
    units: Optional[Union[int, Sequence[int]]],
    deepest: bool = False,
) -> List[str]:
    """Resolve ``layers`` (see ``methods.activation_layers``) and check ``units`` against those that are ``Conv2d``.

    Other layers' channel counts are known only when they run, and are checked then.

    Raises:
        MisconfigurationException: an unknown layer name (the message lists the valid ones) or a
            unit index past a ``Conv2d``'s ``out_channels``, naming ``owner``.
    """
    with misconfiguration(owner, LayerNotFoundError, ValueError):
        resolved = activation_layers(pl_module, layers, deepest=deepest)
        for name in resolved:
            module = pl_module.get_submodule(name)
            if isinstance(module, nn.Conv2d):
                check_units(units, module.out_channels)
    return resolved


def check_name(owner: str, name: Optional[str]) -> Optional[str]:
    """``name`` (appended to the callback's tags) when it is ``None`` or a non-empty string without ``/``.

    Raises:
        MisconfigurationException: anything else, naming ``owner``.
    """
    if name is not None and (not isinstance(name, str) or not name.strip() or "/" in name):
        raise MisconfigurationException(f"{owner}: name must be None or a non-empty string without '/', got {name!r}")
    return name


def class_names_for(
    given: Optional[Sequence[str]], trainer: "pl.Trainer", pl_module: "pl.LightningModule"
) -> Optional[List[str]]:
    """``given``, else the LightningModule's or the validation dataset's class names (see ``find_class_names``)."""
    if given is not None:
        return list(given)
    return find_class_names(pl_module, getattr(first_val_loader(trainer), "dataset", None))
