"""Stripe's request encoding read back (for the simulator): form fields in bracket notation, as the
SDK writes them: `metadata[paycell_order_id]=...`, `payment_method_types[0]=card`, `confirm=true`."""
from __future__ import annotations

import re
from collections.abc import Iterable

FIELDS_MAX = 200
DEPTH_MAX = 5
_KEY = re.compile(r"([^\[\]]+)((?:\[[^\[\]]*\])*)")
_PART = re.compile(r"\[([^\[\]]*)\]")


class FormError(ValueError):
    """A body Stripe would refuse as malformed."""


def unflatten(items: Iterable[tuple[str, str]]) -> dict:
    """`[("a[b]", "1"), ("c[0]", "x")]` -> `{"a": {"b": "1"}, "c": ["x"]}`."""
    root: dict = {}
    for count, (key, value) in enumerate(items, 1):
        if count > FIELDS_MAX:
            raise FormError(f"more than {FIELDS_MAX} fields")
        match = _KEY.fullmatch(key)
        if match is None:
            raise FormError(f"malformed parameter name {key!r}")
        parts = [match[1], *_PART.findall(match[2])]
        if len(parts) > DEPTH_MAX or any(part == "" for part in parts):
            raise FormError(f"unsupported parameter name {key!r}")
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise FormError(f"parameter {key!r} conflicts with another")
        if parts[-1] in node:
            raise FormError(f"parameter {key!r} given twice")
        node[parts[-1]] = value
    return _lists(root)


def _lists(node):
    """Dicts whose keys are all indices (0, 1, ...) become lists, as Stripe reads them."""
    if not isinstance(node, dict):
        return node
    node = {key: _lists(value) for key, value in node.items()}
    if node and all(key.isdigit() for key in node):
        indices = sorted(int(key) for key in node)
        if indices != list(range(len(indices))):
            raise FormError("list indices must run 0, 1, 2, ...")
        return [node[str(i)] for i in indices]
    return node
