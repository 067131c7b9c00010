"""Class names: where a model or dataset keeps them, and what a class index is called."""

from __future__ import annotations

from typing import Any, List, Optional, Sequence

NAME_ATTRIBUTES = ("class_names", "classes")
"""Attributes read for class names, in this order (a LightningModule's ``class_names``, torchvision's ``classes``)."""


def find_class_names(*owners: Any) -> Optional[List[str]]:
    """The first sequence of names found on ``owners`` (each tried in turn), as strings; ``None`` if none.

    Example:
        >>> class Data:
        ...     classes = ["cat", "dog"]
        >>> find_class_names(None, Data()), find_class_names(object())
        (['cat', 'dog'], None)
    """
    for owner in owners:
        for attribute in NAME_ATTRIBUTES:
            names = getattr(owner, attribute, None)
            if isinstance(names, Sequence) and not isinstance(names, (str, bytes)):
                return [str(name) for name in names]
    return None


def class_name(index: int, class_names: Optional[Sequence[str]] = None) -> str:
    """What class ``index`` is called: its entry of ``class_names``, else ``"class <index>"``.

    Example:
        >>> class_name(1, ["cat", "dog"]), class_name(5, ["cat", "dog"]), class_name(2)
        ('dog', 'class 5', 'class 2')
    """
    if class_names is not None and 0 <= index < len(class_names):
        return str(class_names[index])
    return f"class {index}"
