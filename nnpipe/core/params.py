"""The base of every params section, and the one line a bad value becomes.

A section is a frozen pydantic model (``extra="forbid"``, every field required: params.yaml
holds every value) that lives beside the code that reads it; nnpipe.params composes them.
:func:`error_line` turns pydantic's own error into one line naming the file, the key and the
value, e.g. ``params.yaml: split.val_size=1.2 must be less than 1``.

``MathParams`` lives here, beside nnpipe.core.portable, which stays free of pydantic: the
warm-start launcher imports it on every stage launch.
"""
from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, ValidationError

from nnpipe.core.errors import short

MAX_SCALE = 1e6  # lr, init_scale, noise: far past any use, far from overflow
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]  # no bools, strings, nan
Text = Annotated[StrictStr, Field(min_length=1)]


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)


class MathParams(Section):
    portable: StrictBool  # pinned kernels: same bytes on any x86-64 (nnpipe.core.portable)


def _rank(order: list[str]):
    """An unknown key first, then a missing one, then the first field's error, its deepest
    (a list's item before the list, a union's branch before the union)."""
    def rank(error: dict) -> tuple:
        loc = error["loc"]
        field = order.index(loc[0]) if loc and loc[0] in order else len(order)
        return {"extra_forbidden": 0, "missing": 1}.get(error["type"], 2), field, -len(loc)
    return rank


def _at(raw: Any, loc: tuple) -> tuple[str, Any]:
    """The key (``hidden_dims[0]``) and value ``loc`` points at in ``raw``; a union branch's
    name in ``loc`` names no value and is skipped."""
    key, value = "", raw
    for part in loc:
        if isinstance(value, dict) and part in value:
            key, value = f"{key}.{part}" if key else str(part), value[part]
        elif isinstance(value, (list, tuple)) and isinstance(part, int) and part < len(value):
            key, value = f"{key}[{part}]", value[part]
    return key, value


def _words(error: dict) -> str:
    """pydantic's message as the end of our line: ``Input should be ...`` -> ``must be ...``,
    a validator's ``Value error, ...`` -> its own words."""
    message = error["msg"].removeprefix("Value error, ").replace(" after validation", "")
    return re.sub(r"^\w+ should", "must", message)


def error_line(origin: str, name: str, cls: type[Section], raw: dict,
               exc: ValidationError) -> str:
    """One line for ``exc``, the error of validating section ``name`` (mapping ``raw``) as
    ``cls``: the file, the key, the value and pydantic's own words for what is wrong."""
    fields, errors = list(cls.model_fields), exc.errors()
    first = min(errors, key=_rank(fields))
    loc, kind = first["loc"], first["type"]
    if kind == "extra_forbidden":
        return f"{origin}: unknown key {name}.{short(str(loc[0]))} (known: {', '.join(fields)})"
    if kind == "missing":
        return f"{origin}: missing key {name}.{loc[0]}"
    if not loc:  # a model validator: a rule across keys, its message names them
        return f"{origin}: {name}.{_words(first)}"
    same = [e for e in errors if e["loc"][:1] == loc[:1] and len(e["loc"]) == len(loc)]
    first_words, *others = dict.fromkeys(_words(e) for e in same)  # a union: each branch's
    words = " or ".join([first_words, *(w.removeprefix("must be ").removeprefix("must ")
                                        for w in others)])
    key, value = _at(raw, loc)
    return f"{origin}: {name}.{key}={short(repr(value))} {words}"

