"""dvc.yaml keeps its promises: every stage's deps are what its script imports, its params
what the script declares (PARAMS)."""
from __future__ import annotations

import argparse
import ast
import importlib
import re
from pathlib import Path

import pytest
import yaml

from deps import ROOT, closure, code_deps, resolve_stages
from nnpipe.models import CURVES

DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())
STAGES = resolve_stages(DVC)
REGISTRY: dict[str, str] = DVC["vars"][0]["models"]  # model -> the data set it trains on
def _body(name: str) -> dict:
    return STAGES[name]


def _script(name: str) -> Path:
    match = re.search(r"python -m stages (\w+)", _body(name)["cmd"])
    assert match, f"{name}: cmd does not run a stage module"
    return ROOT / "stages" / f"{match.group(1)}.py"


def params_declared(name: str) -> set[str]:
    """What the stage module declares it reads (PARAMS, and math.portable for every stage:
    stages/__main__.py), for this stage of dvc.yaml (``train@linear``: ``--name linear``)."""
    from stages import __main__ as runner

    module = importlib.import_module(f"stages.{_script(name).stem}")
    return set(runner.declared(module, argparse.Namespace(name=name.partition("@")[2])))


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_deps_are_its_script_and_every_module_it_imports(name):
    declared = {d for d in _body(name)["deps"] if d.endswith(".py") or d.startswith("nnpipe/")}
    assert declared == code_deps(_script(name))


@pytest.mark.parametrize("package", ["nnpipe", "nnpipe/core", "stages", "warmstart"])
def test_package_inits_hold_only_a_docstring(package):
    """They run before every stage but are not deps: they must not be able to change a result."""
    tree = ast.parse((ROOT / package / "__init__.py").read_text())
    assert len(tree.body) == 1 and isinstance(tree.body[0], ast.Expr) \
        and isinstance(tree.body[0].value, ast.Constant)


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_params_are_exactly_what_it_declares(name):
    """A stage that depends on params.yaml's bytes (check_params) reads it whole."""
    body = _body(name)
    expected = set() if "params.yaml" in body["deps"] else params_declared(name)
    assert set(body.get("params", [])) == expected


def test_a_stage_reads_only_the_params_it_declares():
    from nnpipe import params
    from stages.__main__ import Declared

    names = ("math.portable", "seed", "split.val_size", "plot")
    p = Declared(params.load(str(ROOT / "params.yaml"), "math", "seed", "split", "plot"), names)
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert (p.seed, p.split.val_size, p["plot"].grid_size) == \
        (raw["seed"], raw["split"]["val_size"], raw["plot"]["grid_size"])
    for read in (lambda: p.split.test_size, lambda: p.fetch, lambda: p.math.other):
        with pytest.raises(AttributeError, match="not declared by the stage"):
            read()


def test_every_params_key_is_read_by_some_stage():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    declared = {p for name in STAGES for p in _body(name).get("params", [])}
    for section, value in params.items():
        if section in declared:
            continue
        assert isinstance(value, dict), f"top-level {section} is read by no stage"
        for key in value:
            assert f"{section}.{key}" in declared, f"{section}.{key} is read by no stage"


def test_library_never_imports_stages_and_low_modules_stay_low():
    low = {"params", "files", "data", "errors", "split", "preprocess"}
    high = {"training", "evaluation", "plots", "predict", "torch_models", "numpy_mlp"}
    for path in (ROOT / "nnpipe").rglob("*.py"):
        text = path.read_text()
        assert "import stages" not in text and "from stages" not in text
        if path.stem in low:
            imported = {Path(m).stem for m in closure(path)}
            assert not imported & high, f"{path.name} imports {imported & high}"


def _declared(body: dict) -> set[str]:
    entries = [e for kind in ("deps", "outs", "metrics", "plots") for e in body.get(kind, [])]
    paths = {e if isinstance(e, str) else next(iter(e)) for e in entries}
    return {p for p in paths if not p.endswith(".py") and not p.startswith("nnpipe/")}


@pytest.mark.parametrize("name", sorted(STAGES))
def test_cmd_paths_and_declared_paths_are_the_same(name):
    """Every file or directory a cmd names is a dep or an out, and every one declared is named."""
    body = _body(name)
    declared = _declared(body)
    if name == "fetch":  # its source is a param (fetch.source), read through params.yaml
        declared.discard(yaml.safe_load((ROOT / "params.yaml").read_text())["fetch"]["source"])
    named = {t for t in body["cmd"].split()
             if "/" in t or any(p == t or p.startswith(t + "/") for p in declared)}
    # A named directory (evaluate's --models-dir, --confusion-dir) stands for its files.
    assert {p for p in declared if p not in named and str(Path(p).parent) not in named} == set()
    assert {t for t in named
            if t not in declared and not any(str(Path(p).parent) == t for p in declared)} == set()


def test_the_model_registry_is_followed_everywhere():
    """dvc.yaml's vars.models is the one list of models: train writes models/<m> for each from
    its data set, evaluate takes each with its splits (and names it as a dep, so `exp run
    --pull` fetches it), plot_model draws each, `plots` charts its DVCLive curves, `artifacts`
    declares it a model, and params.yaml has each one's section."""
    written = {o for body in STAGES.values() for o in body.get("outs", [])
               if isinstance(o, str) and re.fullmatch(r"models/\w+", o)}
    assert written == {f"models/{m}" for m in REGISTRY}
    assert {n for n in STAGES if n.startswith("train@")} == {f"train@{m}" for m in REGISTRY}
    for model, data in REGISTRY.items():
        assert f"{data}/train.npz" in STAGES[f"train@{model}"]["deps"]
    pairs = re.findall(r"--(\w+) (\S+)", _body("evaluate")["cmd"].split("--models-dir models")[1])
    assert [(m, d) for m, d in pairs if m in REGISTRY] == list(REGISTRY.items())
    assert {n for n in STAGES if n.startswith("plot_model@")} == {f"plot_model@{m}" for m in REGISTRY}
    evaluated = set(_body("evaluate")["deps"])
    for model, splits in REGISTRY.items():
        assert {f"models/{model}", *(f"{splits}/{s}.npz" for s in ("train", "val", "test"))} \
            <= evaluated, model
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert {n for n in params if n.startswith("train_")} == {f"train_{m}" for m in REGISTRY}
    charts = {k: v for entry in DVC["plots"] if isinstance(entry, dict) for k, v in entry.items()}
    for model in REGISTRY:
        curves = f"reports/curves/{model}"
        assert {curves: {"cache": False}} in STAGES[f"train@{model}"]["outs"], model
        assert charts[curves]["y"] == {f"{curves}/plots/metrics/{f}.tsv": f for f in CURVES}
    assert DVC["artifacts"] == {m: {"path": f"models/{m}", "type": "model"} for m in REGISTRY}


def test_fetch_depends_on_the_data_sets_csv():
    """fetch.source is a dep of fetch (DVC resolves ${fetch.source} from params.yaml), so
    editing the CSV re-runs fetch and what follows."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert "${fetch.source}" in DVC["stages"]["fetch"]["deps"]
    assert params["fetch"]["source"] in _body("fetch")["deps"]


def test_readme_table_lists_every_stage_of_the_registry():
    """README's pipeline table has a row per stage, so a model added to the registry without
    its row fails here (plot_model@<model> is one row for every model)."""
    readme = (ROOT / "README.md").read_text()
    rows = set(re.findall(r"^\| `([^`]+)` \|", readme, re.M))
    expected = {n.split("@")[0] + "@<model>" if "@" in n else n for n in STAGES}
    assert expected <= rows, expected - rows


def test_dvc_lock_holds_exactly_the_stages_of_dvc_yaml():
    """DVC keeps the lock entry of a stage removed from dvc.yaml: a stale one misleads
    bench/floor.py and readers of dvc.lock."""
    lock = yaml.safe_load((ROOT / "dvc.lock").read_text())
    assert set(lock["stages"]) == set(STAGES)


def test_bench_floor_runs_every_stage_after_the_stages_it_depends_on():
    """bench/floor.py (and warmstart.record) run dvc.yaml's stages in this order, one by one."""
    from warmstart.record import stage_commands

    def overlaps(a: str, b: str) -> bool:
        return a == b or a.startswith(b + "/") or b.startswith(a + "/")

    commands = stage_commands(ROOT)
    assert [argv[3] for _, argv in commands] == [b["cmd"].split()[3] for b in STAGES.values()]
    outs = {name: _declared({k: b.get(k, []) for k in ("outs", "metrics", "plots")})
            for name, b in STAGES.items()}
    done: set[str] = set()
    for name, body in STAGES.items():  # the floor's order
        for dep in (d for d in body["deps"] if not d.endswith(".py") and d != "nnpipe/core"):
            producers = {o for o, paths in outs.items()
                         if o != name and any(overlaps(dep, p) for p in paths)}
            assert producers <= done, (name, dep, producers - done)
        done.add(name)
