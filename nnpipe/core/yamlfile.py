"""Read a YAML file (params.yaml) as DVC reads it, refusing hostile YAML before it expands.

ruamel.yaml, YAML 1.2 as in DVC: ``1e-3`` is a float and ``yes`` a string. YAML aliases,
nesting deeper than MAX_DEPTH and integers of more than MAX_DIGITS digits are refused with
one line naming the file and line, before anything expands or is allocated.
"""
from __future__ import annotations

from typing import Any

from nnpipe.core.errors import PipelineError

MAX_DEPTH = 20    # nesting levels in params.yaml
MAX_DIGITS = 30   # digits of an integer in params.yaml


class _Refused(Exception):
    """params.yaml holds something refused before it expands or allocates."""

    def __init__(self, what: str, mark: Any):
        super().__init__(what)
        self.mark = mark


def _yaml() -> Any:
    """ruamel.yaml as DVC reads params (YAML 1.2, so ``1e-3`` is a float and ``yes`` a string),
    refusing aliases, deep nesting and huge integers before they expand or allocate."""
    from ruamel.yaml import YAML
    from ruamel.yaml.composer import Composer
    from ruamel.yaml.constructor import SafeConstructor
    from ruamel.yaml.events import AliasEvent

    class GuardedComposer(Composer):
        depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            event = self.parser.peek_event()
            if isinstance(event, AliasEvent):
                raise _Refused("YAML aliases (*name) are not accepted", event.start_mark)
            self.depth += 1
            try:
                if self.depth > MAX_DEPTH:
                    raise _Refused(f"nested deeper than {MAX_DEPTH} levels", event.start_mark)
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

    class GuardedConstructor(SafeConstructor):
        def construct_yaml_int(self, node: Any) -> Any:
            if len(node.value) > MAX_DIGITS:
                raise _Refused(f"an integer of {len(node.value)} digits (at most {MAX_DIGITS})",
                               node.start_mark)
            return super().construct_yaml_int(node)

    GuardedConstructor.add_constructor("tag:yaml.org,2002:int",
                                       GuardedConstructor.construct_yaml_int)
    yaml = YAML(typ="safe", pure=True)
    yaml.Composer = GuardedComposer
    yaml.Constructor = GuardedConstructor
    return yaml


def read_yaml(path: str) -> dict:
    """Read params.yaml as a mapping, with a one-line error for a missing or broken file."""
    from ruamel.yaml.error import YAMLError

    try:
        with open(path, encoding="utf-8") as handle:
            raw = _yaml().load(handle)
    except FileNotFoundError:
        raise PipelineError(f"{path}: file not found") from None
    except UnicodeDecodeError:
        raise PipelineError(f"{path}: not a UTF-8 YAML file") from None
    except IsADirectoryError:
        raise PipelineError(f"{path}: is a directory, not a YAML file") from None
    except OSError as exc:
        raise PipelineError(f"{path}: cannot read ({exc.strerror})") from None
    except _Refused as exc:
        raise PipelineError(f"{path}: {exc} (line {exc.mark.line + 1})") from None
    except (YAMLError, RecursionError, ValueError) as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise PipelineError(f"{path}: not valid YAML{where}") from None
    if not isinstance(raw, dict):
        raise PipelineError(f"{path}: must be a mapping of sections")
    return raw
