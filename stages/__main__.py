"""``python -m stages <stage> ARGS``: the one runner of every stage (each cmd of dvc.yaml).

The launcher (warmstart.launcher) runs the stage in a fork of a warm server or, failing that,
in this process; either way ``run`` does the rest. It reads ``math.portable`` from the params
file (``--params``) and pins the math kernels, then imports ``stages.<stage>``: a module whose
top-level imports load numpy and torch, pinned. The module declares

- ``PARAMS``: the params it reads, as dvc.yaml's ``params`` of the stage name them (a section
  whole, or ``section.key``); ``{flag}`` is the value of an argument (``train_{name}``);
  ``math.portable`` is read for every stage;
- ``add_arguments(parser)``: its own arguments (``--params`` is common to all);
- ``LOG`` (optional): the name its log and error lines start with, ``{flag}`` as above;
- ``PAIRS`` (optional): an attribute of ``args`` that takes the ``--NAME VALUE`` pairs no
  argument claimed (DVC's unpacking of a dict);

and one function, ``run(args, p) -> str``, given its arguments and its validated params (only
what it declares), that returns the summary line logged here. Errors become one line and
exit 2 (nnpipe.core.cli).
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any, NoReturn

from nnpipe.core import cli, portable, yamlfile

MATH = "math.portable"  # every stage reads it: the runner pins the kernels by it


def portable_setting(path: str, raw: Any = None) -> bool | None:
    """``math.portable`` of params file ``path`` (``raw``: as already read), or None if it is
    not a boolean (validation refuses it then). A file that cannot be read is a
    PipelineError naming it."""
    section = (yamlfile.read_yaml(path) if raw is None else raw).get("math")
    value = section.get("portable") if isinstance(section, dict) else None
    return value if isinstance(value, bool) else None


def pin_as(path: str, raw: Any = None) -> None:
    """Pin the math kernels as params file ``path`` says, before numpy or torch load."""
    setting = portable_setting(path, raw)
    if setting is not None:
        portable.pin(setting)


def declared(module: Any, args: argparse.Namespace) -> tuple[str, ...]:
    """The params the stage reads, ``{flag}`` filled from its arguments, math.portable first."""
    return (MATH, *(name.format(**vars(args)) for name in module.PARAMS))


class Declared:
    """The validated params a stage declared, and nothing else: ``p.seed``, ``p.split``,
    ``p.data.missing`` (a section declared per key exposes only those keys), ``p[name]``."""

    def __init__(self, loaded: Any, names: tuple[str, ...]):
        self._loaded, self._names = loaded, names

    def __getattr__(self, section: str) -> Any:
        if section in self._names:
            return self._loaded[section]
        keys = {n.split(".", 1)[1] for n in self._names if n.startswith(section + ".")}
        if not keys:
            raise AttributeError(f"params {section!r} not declared by the stage (PARAMS)")
        return _Keys(self._loaded[section], section, keys)

    __getitem__ = __getattr__


class _Keys:
    """A section declared key by key: reading another key of it is a bug."""

    def __init__(self, section: Any, name: str, keys: set[str]):
        self._section, self._name, self._keys = section, name, keys

    def __getattr__(self, key: str) -> Any:
        if key not in self._keys:
            raise AttributeError(f"params {self._name}.{key} not declared by the stage (PARAMS)")
        return getattr(self._section, key)


def parse(module: Any, stage: str, argv: list[str]) -> argparse.Namespace:
    """The stage's arguments: ``--params`` and what its ``add_arguments`` adds."""
    parser = argparse.ArgumentParser(prog=f"python -m stages {stage}", description=module.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--params", default="params.yaml", help="the params file")
    module.add_arguments(parser)
    args, rest = parser.parse_known_args(argv)
    pairs = getattr(module, "PAIRS", None)
    if pairs:
        setattr(args, pairs, cli.name_value_pairs(parser, rest))
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return args


def run(stage: str, argv: list[str]) -> None:
    """Run ``stages.<stage>`` on ``argv`` in this process; an error is one line and
    SystemExit(2)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--params", default="params.yaml")
    path, raw = None, None  # the params file, read once
    if not {"-h", "--help"} & set(argv):  # help reads no params
        with cli.one_line_errors(stage):  # before the stage and its name are known
            path = common.parse_known_args(argv)[0].params
            raw = yamlfile.read_yaml(path)
            pin_as(path, raw)
    module = importlib.import_module(f"stages.{stage}")
    args = parse(module, stage, argv)
    with cli.stage(getattr(module, "LOG", stage).format(**vars(args))) as log:
        from nnpipe import params

        names = declared(module, args)
        loaded = params.load(args.params, *dict.fromkeys(n.split(".")[0] for n in names),
                             raw=raw if args.params == path else None)
        portable.pin(loaded.math.portable)  # validated now; checks the kernels numpy loaded
        log.info("%s", module.run(args, Declared(loaded, names)))


def execute(stage: str, argv: list[str]) -> NoReturn:
    """``run`` and end the process (nnpipe.core.cli.run_command): the launcher's in-process
    run and a warm server's fork both end here, with the argv of ``python -m stages``."""
    sys.argv = [__file__, stage, *argv]
    cli.run_command(lambda: run(stage, argv))


if __name__ == "__main__":
    from warmstart import launcher

    launcher.main(sys.argv[1:])
