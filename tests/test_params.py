"""nnpipe.params: params.yaml into the frozen pydantic sections beside their code; every bad value names key and value."""
from __future__ import annotations

import copy
import re
from pathlib import Path

import pydantic
import pytest
import yaml

from nnpipe import architecture, dataset, params
from nnpipe.core import yamlfile
from nnpipe.core.errors import PipelineError

REPO_PARAMS = Path(__file__).parents[1] / "params.yaml"
REPO_RAW = yaml.safe_load(REPO_PARAMS.read_text(encoding="utf-8"))
# The model registry (dvc.yaml's vars.models): each model's section is train_<model>.
MODELS = next(v["models"] for v in yaml.safe_load(
    (REPO_PARAMS.parent / "dvc.yaml").read_text(encoding="utf-8"))["vars"] if "models" in v)
MODEL_SECTIONS = [f"{params.MODEL_PREFIX}{m}" for m in MODELS]
# One registry section per backend, edited by the tests below (whichever model comes first).
BY_BACKEND = {}
for _name in MODEL_SECTIONS:
    BY_BACKEND.setdefault(REPO_RAW[_name]["backend"], _name)
TORCH, NUMPY = BY_BACKEND["torch"], BY_BACKEND["numpy"]
COMMON = ("backend, activation, hidden_dims, lr, epochs, batch_size, log_every, class_weight, "
          "keep, patience")


def load(path, *names: str) -> params.Params:
    return params.load(str(path), *names)


@pytest.fixture(scope="module")
def repo_raw() -> dict:
    return copy.deepcopy(REPO_RAW)


@pytest.fixture
def write_params(tmp_path, repo_raw):
    """Write a copy of the repo's params.yaml, changed by ``edit(raw)``, and return its path."""
    def write(edit=None) -> str:
        raw = copy.deepcopy(repo_raw)
        if edit is not None:
            edit(raw)
        path = tmp_path / "params.yaml"
        path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
        return str(path)
    return write


def _set(section: str, key: str, value):
    def edit(raw):
        raw[section][key] = value
    return edit


def _raises(message: str):
    return pytest.raises(PipelineError, match=re.escape(message))


def build(section: str, edit=None) -> params.Section:
    """Validate ``section`` of the repo's params.yaml, changed by ``edit(raw)``, as load() does
    each section it reads (without writing and parsing a file: the quick way to test messages)."""
    raw = copy.deepcopy(REPO_RAW)
    if edit is not None:
        edit(raw)
    return params.build_section(section, raw[section])


# --- the repo's own params.yaml ---------------------------------------------------------------

def _schemas() -> dict[str, type]:
    """Every section of the repo's params.yaml and the model it is validated as."""
    return {**params.SECTIONS, **{n: params.section_class(n, REPO_RAW[n]) for n in MODEL_SECTIONS}}


def test_the_registry_has_a_model_of_each_backend():
    """But sklearn: the reference a linear section switches to (-S ...backend=sklearn)."""
    assert set(BY_BACKEND) | {"sklearn"} == set(architecture.BACKENDS) == set(architecture.MODEL_SECTIONS)


def test_repo_params_yaml_validates_every_section(repo_raw):
    loaded = load(REPO_PARAMS, "seed", *_schemas())
    assert loaded.seed == repo_raw["seed"]
    for name, cls in _schemas().items():
        section = loaded[name]
        assert type(section) is cls, name
        for field in cls.model_fields:
            expected = repo_raw[name][field]
            expected = tuple(expected) if isinstance(expected, list) else expected
            assert getattr(section, field) == expected, f"{name}.{field}"


def test_repo_model_sections_are_validated_as_their_backend_says(repo_raw):
    for name in MODEL_SECTIONS:
        backend = repo_raw[name]["backend"]
        assert _schemas()[name] is architecture.MODEL_SECTIONS[backend], name
        assert load(REPO_PARAMS, name)[name].backend == backend


def test_repo_params_yaml_has_exactly_the_known_sections_and_keys(repo_raw):
    assert set(repo_raw) == {"seed", *_schemas()}
    for name, cls in _schemas().items():
        assert set(repo_raw[name]) == set(cls.model_fields), name


def test_every_field_is_required_params_yaml_holds_the_values():
    for cls in (*params.SECTIONS.values(), *architecture.MODEL_SECTIONS.values()):
        assert all(f.is_required() for f in cls.model_fields.values()), cls.__name__


def test_backends_share_the_model_keys_and_add_their_own():
    common = list(architecture.ModelParams.model_fields)
    assert ", ".join(common) == COMMON
    assert list(architecture.NumpyModelParams.model_fields) == common + ["init_scale"]
    assert list(architecture.TorchModelParams.model_fields) == common + ["dropout_p", "init"]


def test_load_only_builds_the_sections_asked_for(write_params):
    # a typo in another stage's section does not stop this one
    path = write_params(_set(TORCH, "lrr", 0.1))
    loaded = load(path, "split")
    assert loaded.split == dataset.SplitParams(train_size=0.7, val_size=0.15, test_size=0.15)
    for name in ("seed", TORCH, "fetch"):
        with pytest.raises(AttributeError, match=f"section '{name}' was not loaded"):
            getattr(loaded, name)


# --- model sections: backend and activation are data ----------------------------------------

def _add(name: str, section: dict):
    def edit(raw):
        raw[name] = section
    return edit


@pytest.mark.parametrize("backend", BY_BACKEND)
def test_a_new_model_section_is_validated_as_its_backend(write_params, repo_raw, backend):
    """Sections are data: a new train_wide_mlp is whatever its backend says."""
    path = write_params(_add("train_wide_mlp", dict(repo_raw[BY_BACKEND[backend]],
                                                    hidden_dims=[256])))
    wide = load(path, "train_wide_mlp")["train_wide_mlp"]
    assert type(wide) is architecture.MODEL_SECTIONS[backend]
    assert wide.hidden_dims == (256,) and wide.backend == backend


@pytest.mark.parametrize("activation", architecture.ACTIVATIONS)
@pytest.mark.parametrize("backend", BY_BACKEND)
def test_every_backend_takes_every_activation(backend, activation):
    section = BY_BACKEND[backend]
    assert build(section, _set(section, "activation", activation)).activation == activation


@pytest.mark.parametrize("key, value", [("dropout_p", 0.1), ("init", "xavier_normal")])
def test_a_torch_key_in_a_numpy_section_is_refused_in_one_line(write_params, key, value):
    path = write_params(_set(NUMPY, key, value))
    with _raises(f"{path}: unknown key {NUMPY}.{key} (known: {COMMON}, init_scale)"):
        load(path, NUMPY)


def test_a_numpy_key_in_a_torch_section_is_refused_in_one_line():
    with _raises(f"params.yaml: unknown key {TORCH}.init_scale (known: {COMMON}, dropout_p, "
                 "init)"):
        build(TORCH, _set(TORCH, "init_scale", 0.01))


def test_switching_the_backend_refuses_the_other_backends_keys(repo_raw):
    with pytest.raises(PipelineError) as caught:
        build("train_x", _add("train_x", dict(repo_raw[TORCH], backend="numpy")))
    message = str(caught.value)
    assert message.startswith("params.yaml: unknown key train_x.") and "\n" not in message
    assert message.split("unknown key train_x.")[1].split(" ")[0] in ("dropout_p", "init")
    assert message.endswith(f"(known: {COMMON}, init_scale)")


def test_a_sklearn_section_reads_epochs_and_class_weight_and_ignores_the_other_backends_keys(
        repo_raw):
    """Switching a section to sklearn is one key: its torch or numpy keys are ignored."""
    for name in (TORCH, NUMPY):
        section = build(name, _set(name, "backend", "sklearn"))
        assert type(section) is architecture.SklearnModelParams
        assert (section.epochs, section.class_weight) == (repo_raw[name]["epochs"],
                                                          repo_raw[name]["class_weight"])
        assert section.activation == "identity" and section.hidden_dims == ()
    with _raises(f"params.yaml: unknown key {TORCH}.lrr (known: backend, epochs, class_weight)"):
        build(TORCH, lambda raw: raw[TORCH].update(backend="sklearn", lrr=0.1))
    with _raises(f"params.yaml: missing key {TORCH}.class_weight"):
        build(TORCH, lambda raw: (raw[TORCH].update(backend="sklearn"),
                                  raw[TORCH].pop("class_weight")))


def test_a_missing_backend_is_named_with_its_choices(write_params):
    path = write_params(lambda raw: raw[TORCH].pop("backend"))
    with _raises(f"{path}: missing key {TORCH}.backend (one of numpy, torch, sklearn)"):
        load(path, TORCH)


@pytest.mark.parametrize("value", ["jax", "Torch", None, 5, ["torch"]])
def test_an_invalid_backend_is_named_with_its_choices(value):
    with _raises(f"params.yaml: {NUMPY}.backend={value!r} must be one of numpy, torch, sklearn"):
        build(NUMPY, _set(NUMPY, "backend", value))


def test_a_missing_activation_is_named():
    with _raises(f"params.yaml: missing key {NUMPY}.activation"):
        build(NUMPY, lambda raw: raw[NUMPY].pop("activation"))


def test_a_section_without_a_schema_is_a_programming_error(write_params):
    path = write_params()
    # neither a fixed section nor a model's train_<model>: a model's name alone is no section
    with pytest.raises(KeyError, match=f"no schema for params section '{next(iter(MODELS))}'"):
        params.load(path, next(iter(MODELS)))
    with pytest.raises(KeyError, match="no schema for params section 'trainer'"):
        params.load(path, "seed", "trainer")


def test_lists_become_tuples(write_params):
    loaded = load(write_params(), "spiral", "data")
    assert loaded.spiral.classes == ("c1", "c3", "c2")
    assert loaded.data.features == ("X1", "X2")
    assert isinstance(loaded.data.features, tuple)


@pytest.mark.parametrize("missing", dataset.MISSING)
@pytest.mark.parametrize("unknown", dataset.HANDLE_UNKNOWN)
def test_data_missing_and_handle_unknown_take_their_policies(missing, unknown):
    def edit(raw):
        raw["data"].update(features=["a", "b", "k"], categorical=["k"], missing=missing,
                           handle_unknown=unknown)
    data = build("data", edit)
    assert (data.missing, data.handle_unknown, data.categorical) == (missing, unknown, ("k",))


def test_int_is_accepted_where_a_number_is_expected():
    assert build(TORCH, _set(TORCH, "lr", 1)).lr == 1


@pytest.mark.parametrize("section", [TORCH, NUMPY])
def test_batch_size_may_be_null_or_positive_int(section):
    assert build(section, _set(section, "batch_size", 32)).batch_size == 32
    assert build(section, _set(section, "batch_size", None)).batch_size is None


# --- hidden_dims: a list of widths, or auto ------------------------------------------------

@pytest.mark.parametrize("section", [TORCH, NUMPY])
def test_hidden_dims_accepts_auto_and_a_list(write_params, section):
    path = write_params(_set(section, "hidden_dims", "auto"))
    assert load(path, section)[section].hidden_dims == "auto"
    assert build(section, _set(section, "hidden_dims", [7, 5])).hidden_dims == (7, 5)


@pytest.mark.parametrize("widths", [[1], [100], [64, 32], [8] * architecture.MAX_LAYERS])
def test_hidden_dims_takes_any_depth(widths):
    assert build(NUMPY, _set(NUMPY, "hidden_dims", widths)).hidden_dims == tuple(widths)


def test_valid_sha256_is_accepted():
    digest = "ab" * 32
    assert build("fetch", _set("fetch", "sha256", digest.upper())).sha256 == digest.upper()


# --- frozen -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(_schemas()))
def test_sections_are_frozen(name):
    section = build(name)
    first = next(iter(type(section).model_fields))
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        setattr(section, first, 123)


def test_params_container_is_frozen():
    loaded = load(REPO_PARAMS, "seed")
    with pytest.raises(AttributeError, match="frozen"):
        loaded.seed = 1


# --- key errors -------------------------------------------------------------------------------

@pytest.mark.parametrize("section, known", [(TORCH, f"{COMMON}, dropout_p, init"),
                                            (NUMPY, f"{COMMON}, init_scale")])
def test_unknown_key_is_named(section, known):
    with _raises(f"params.yaml: unknown key {section}.lrr (known: {known})"):
        build(section, _set(section, "lrr", 0.1))


@pytest.mark.parametrize("section, key", [(TORCH, "lr"), (TORCH, "dropout_p"), (TORCH, "init"),
                                          (NUMPY, "init_scale"), (NUMPY, "hidden_dims")])
def test_missing_key_is_named(section, key):
    with _raises(f"params.yaml: missing key {section}.{key}"):
        build(section, lambda raw: raw[section].pop(key))


def test_missing_section_is_named(write_params):
    path = write_params(lambda raw: raw.pop("plot"))
    with _raises(f"{path}: missing key plot"):
        load(path, "plot")
    path = write_params(lambda raw: raw.pop(TORCH))
    with _raises(f"{path}: missing key {TORCH}"):
        load(path, TORCH)


def test_missing_seed_is_named(write_params):
    path = write_params(lambda raw: raw.pop("seed"))
    with _raises(f"{path}: missing key seed"):
        load(path, "seed")


# --- one line per bad value: file, key and value, then pydantic's own words ------------------

@pytest.mark.parametrize("section, key, value, message", [
    (NUMPY, "activation", "tanh", "activation='tanh' must be 'identity' or 'relu'"),
    (TORCH, "init", "he", "init='he' must be 'default' or 'xavier_normal'"),
    (TORCH, "keep", "best", "keep='best' must be 'best_val' or 'last'"),
    (NUMPY, "class_weight", None, "class_weight=None must be 'balanced' or 'none'"),
    ("data", "missing", "impute",
     "missing='impute' must be 'error', 'drop', 'mean', 'median' or 'most_frequent'"),
    ("data", "handle_unknown", "warn", "handle_unknown='warn' must be 'error' or 'ignore'"),
    ("data", "categorical", "X1", "categorical='X1' must be a valid tuple"),
    ("data", "categorical", ["X1", "X1"], "categorical=['X1', 'X1'] must not repeat a name"),
    ("data", "categorical", ["X3"], "categorical=['X3'] names 'X3', which is not in "
                                    "data.features"),
    ("data", "features", ["X1", ""], "features[1]='' must have at least 1 character"),
    ("data", "target", None, "target=None must be a valid string"),
    (TORCH, "lr", "0.01", "lr='0.01' must be a valid number"),
    (TORCH, "lr", True, "lr=True must be a valid number"),
    (NUMPY, "lr", float("inf"), "lr=inf must be a finite number"),
    (TORCH, "lr", -0.1, "lr=-0.1 must be greater than 0"),
    (TORCH, "lr", 1e10, "lr=10000000000.0 must be less than or equal to 1000000"),
    (TORCH, "epochs", 10.0, "epochs=10.0 must be a valid integer"),
    (NUMPY, "epochs", 10**7, "epochs=10000000 must be less than or equal to 1000000"),
    (NUMPY, "batch_size", 0, "batch_size=0 must be greater than 0"),
    (TORCH, "patience", 2.0, "patience=2.0 must be a valid integer"),
    (TORCH, "dropout_p", 1.0, "dropout_p=1.0 must be less than 1"),
    (TORCH, "dropout_p", -0.1, "dropout_p=-0.1 must be greater than or equal to 0"),
    (TORCH, "hidden_dims", "big", "hidden_dims='big' must be 'auto' or a valid tuple"),
    (TORCH, "hidden_dims", [64, -1], "hidden_dims[1]=-1 must be greater than 0"),
    (NUMPY, "hidden_dims", [True], "hidden_dims[0]=True must be a valid integer"),
    (TORCH, "hidden_dims", [], "hidden_dims=[] must be 'auto' or have at least 1 item, not 0"),
    (NUMPY, "hidden_dims", [8] * 21, f"hidden_dims={[8] * 21} must be 'auto' or have at most 20 "
                                     "items, not 21"),
    (TORCH, "hidden_dims", [10**12],
     "hidden_dims[0]=1000000000000 must be less than or equal to 100000"),
    ("fetch", "source", "", "source='' must have at least 1 character"),
    ("fetch", "source", 5, "source=5 must be a valid string"),
    ("fetch", "sha256", "g" * 64, f"sha256='{'g' * 64}' must match pattern '^[0-9a-fA-F]{{64}}$'"),
    ("fetch", "sha256", 12345, "sha256=12345 must be a valid string"),
    ("fetch", "timeout", 1e10, "timeout=10000000000.0 must be less than or equal to 86400"),
    ("fetch", "max_mb", 0, "max_mb=0 must be greater than or equal to 0.000001"),
    ("spiral", "classes", ["c1", 2], "classes[1]=2 must be a valid string"),
    ("spiral", "classes", [], "classes=[] must have at least 1 item, not 0"),
    ("spiral", "classes", ["a", "b", "a"], "classes=['a', 'b', 'a'] must not repeat a name"),
    ("spiral", "noise", -0.2, "noise=-0.2 must be greater than or equal to 0"),
    ("spiral", "samples_per_class", 10**8, "samples_per_class=100000000 must be less than or "
                                           "equal to 30000000"),
    ("split", "val_size", 1.2, "val_size=1.2 must be less than 1"),
    ("split", "train_size", 0, "train_size=0 must be greater than 0"),
    ("random_data", "num_features", 2.0, "num_features=2.0 must be a valid integer"),
    ("plot", "grid_size", 0, "grid_size=0 must be greater than 0"),
])
def test_a_bad_value_is_one_line_naming_file_key_and_value(section, key, value, message):
    with _raises(f"params.yaml: {section}.{message}"):
        build(section, _set(section, key, value))


def test_noise_zero_is_allowed():
    assert build("spiral", _set("spiral", "noise", 0)).noise == 0


def test_dropout_zero_is_allowed():
    assert build(TORCH, _set(TORCH, "dropout_p", 0)).dropout_p == 0


def test_split_sizes_must_sum_to_one(write_params):
    def edit(raw):
        raw["split"].update(train_size=0.8, val_size=0.15, test_size=0.15)
    path = write_params(edit)
    with _raises(f"{path}: split.train_size + val_size + test_size=1.1 must sum to 1"):
        load(path, "split")


def test_split_sizes_summing_to_one_in_float_arithmetic_pass():
    def edit(raw):
        raw["split"].update(train_size=0.6, val_size=0.3, test_size=0.1)
    assert build("split", edit) == dataset.SplitParams(train_size=0.6, val_size=0.3, test_size=0.1)


# --- seed -------------------------------------------------------------------------------------

def test_invalid_seed_is_named_by_load(write_params):
    path = write_params(lambda raw: raw.__setitem__("seed", -1))
    with _raises(f"{path}: seed=-1 must be an integer in [0, 2**32)"):
        load(path, "seed")


@pytest.mark.parametrize("value", [-1, 2**32, "1234", 12.0, True, None])
def test_invalid_seed_is_named(value):
    with _raises(f"params.yaml: seed={value!r} must be an integer in [0, 2**32)"):
        params.check_seed(value)


@pytest.mark.parametrize("value", [0, 2**32 - 1])
def test_seed_bounds_are_accepted(write_params, value):
    path = write_params(lambda raw: raw.__setitem__("seed", value))
    assert load(path, "seed").seed == value


# --- the file itself --------------------------------------------------------------------------

def test_missing_file(tmp_path):
    path = tmp_path / "nope" / "params.yaml"
    with _raises(f"{path}: file not found"):
        load(str(path), "seed")


def test_invalid_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("seed: 1\nsplit:\n  train_size: [0.7\n  val_size: 0.15\n", encoding="utf-8")
    with pytest.raises(PipelineError, match=re.escape(f"{path}: not valid YAML") + r" \(line \d+\)"):
        load(str(path), "seed")


@pytest.mark.parametrize("text", ["", "- 1\n- 2\n", "just a string\n"])
def test_top_level_must_be_a_mapping(tmp_path, text):
    path = tmp_path / "params.yaml"
    path.write_text(text, encoding="utf-8")
    with _raises(f"{path}: must be a mapping of sections"):
        load(str(path), "seed")


@pytest.mark.parametrize("value", [[0.7, 0.15, 0.15], "0.7", None])
def test_non_mapping_section_is_named(write_params, value):
    path = write_params(lambda raw: raw.__setitem__("split", value))
    with _raises(f"{path}: section 'split' must be a mapping, got {value!r}"):
        load(path, "split")


def test_build_section_default_origin():
    with _raises("params.yaml: unknown key plot.dpi"):
        params.build_section("plot", {"max_points": 10, "grid_size": 5, "dpi": 3})
    section = params.build_section("plot", {"max_points": 10, "grid_size": 5})
    assert section == dataset.PlotParams(max_points=10, grid_size=5)
    with _raises("params.yaml: missing key plot.grid_size"):
        params.build_section("plot", {"max_points": 10})


# --- YAML as DVC reads it, and hostile YAML ---------------------------------------------------

def _text(tmp_path, text: str) -> str:
    path = tmp_path / "params.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_hand_written_exponent_numbers_are_floats_as_dvc_reads_them(tmp_path, repo_raw):
    raw = copy.deepcopy(repo_raw)
    raw[TORCH]["lr"] = 0.0123
    text = yaml.safe_dump(raw, sort_keys=False).replace("lr: 0.0123\n", "lr: 1e-3\n")
    assert "lr: 1e-3" in text
    loaded = load(_text(tmp_path, text), TORCH)
    assert loaded[TORCH].lr == 0.001 and isinstance(loaded[TORCH].lr, float)
    from dvc.utils.serialize import parse_yaml  # the reader `dvc params diff` uses

    assert yamlfile.read_yaml(_text(tmp_path, text)) == parse_yaml(text, "params.yaml")


def test_yes_is_a_string_as_in_yaml_1_2_so_a_bool_key_refuses_it(tmp_path, repo_raw):
    text = yaml.safe_dump(repo_raw, sort_keys=False).replace("portable: true", "portable: yes")
    with _raises("math.portable='yes' must be a valid boolean"):
        load(_text(tmp_path, text), "math")


@pytest.mark.parametrize("text, message", [
    ("a: &x [1, 2]\nb: *x\n", "YAML aliases (*name) are not accepted (line 2)"),
    ("a: " + "[" * 5000 + "]" * 5000 + "\n", "nested deeper than 20 levels (line 1)"),
    ("seed: " + "9" * 5000 + "\n", "an integer of 5000 digits (at most 30) (line 1)"),
    ("a: [\n", "not valid YAML"),
], ids=["alias", "deep", "huge-int", "broken"])
def test_hostile_yaml_is_refused_before_it_expands(tmp_path, text, message):
    with _raises(f"params.yaml: {message}"):
        yamlfile.read_yaml(_text(tmp_path, text))


@pytest.mark.parametrize("section, widths", [(TORCH, [100_000, 100_000]),
                                             (NUMPY, [8, 10_000, 10_000])])
def test_deep_lists_that_would_allocate_too_many_weights_are_refused(section, widths):
    weights = sum(a * b for a, b in zip(widths, widths[1:]))
    with _raises(f"{section}.hidden_dims={widths} has {weights} hidden-to-hidden weights, "
                 f"at most {architecture.MAX_WEIGHTS}"):
        build(section, _set(section, "hidden_dims", widths))


def test_random_data_cells_are_bounded():
    def edit(raw):
        raw["random_data"].update(samples_per_class=1000, num_classes=1000, num_features=100)
    with _raises("random_data.samples_per_class * num_classes * num_features=100000000 must be "
                 "at most 50000000"):
        build("random_data", edit)


def test_echoed_values_are_cut_short():
    with pytest.raises(PipelineError) as caught:
        build(TORCH, _set(TORCH, "init", "z" * 10**6))
    assert len(str(caught.value)) < 300 and "(1000002 characters)" in str(caught.value)


# --- `dvc exp run -S`: DVC's own rewrite of params.yaml, applied to every key and back --------

def _leaves(raw: dict, prefix: str = "") -> list[tuple[str, object]]:
    return [leaf for key, value in raw.items() for leaf in (
        _leaves(value, f"{prefix}{key}.") if isinstance(value, dict) else [(prefix + key, value)])]


def _override(key: str, value) -> str:
    """``key=value`` in the override grammar `-S` takes."""
    def text(v):
        if isinstance(v, list):
            return "[" + ",".join(text(item) for item in v) + "]"
        return "null" if v is None else f"'{v}'" if isinstance(v, str) else str(v).lower() \
            if isinstance(v, bool) else repr(v)
    return f"{key}={text(value)}"


def _another(key: str, value):
    """A value of the same kind that -S could set (what a user's experiment would)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1 if isinstance(value, int) else value / 2
    if isinstance(value, list):
        return [] if value else ["X1", "X2"]
    return "a" * 64 if key.endswith("sha256") else 32 if value is None else [7, 8] \
        if value == "auto" else f"{value}x"


def _apply_and_read(path: Path, *overrides: str) -> dict:
    """What `dvc exp run -S` does to params.yaml (dvc.utils.hydra.apply_overrides, called by
    DVC's experiment queues), then the file as the stages read it."""
    from dvc.utils.hydra import apply_overrides

    apply_overrides(path, list(overrides))
    return yamlfile.read_yaml(str(path))


def _round_trip(path: Path, changes: list[tuple[str, object]], exact: bool = True) -> None:
    """Apply ``changes`` and then the original values: the file reads back each value and,
    if ``exact``, ends byte-identical (a value of another kind may drop a blank line)."""
    original, raw = path.read_text(), yamlfile.read_yaml(str(path))
    changed = _apply_and_read(path, *(_override(k, v) for k, v in changes))
    for key, value in changes:
        section, _, name = key.rpartition(".")
        assert (changed[section] if section else changed)[name] == value, key
    assert _apply_and_read(path, *(_override(k, v) for k, v in _leaves(raw))) == raw
    assert path.read_text() == original or not exact


def test_dvc_set_param_round_trips_every_key_of_params_yaml(tmp_path):
    """`-S` on every key at once (a value of its kind, an empty list, null) and back leaves
    params.yaml byte-identical, and `data.categorical=[X1,X2]` then `[]` leaves it valid."""
    path = tmp_path / "params.yaml"
    path.write_text(REPO_PARAMS.read_text())
    leaves = _leaves(REPO_RAW)
    for change in (lambda k, v: _another(k, v), lambda k, v: [], lambda k, v: None):
        _round_trip(path, [(key, change(key, value)) for key, value in leaves])
    _apply_and_read(path, "data.categorical=[X1,X2]")
    _apply_and_read(path, "data.categorical=[]")
    assert path.read_text() == REPO_PARAMS.read_text()
    assert params.load_all(str(path)).data.categorical == ()


@pytest.mark.slow
def test_dvc_set_param_round_trips_each_key_alone(tmp_path):
    """Each key alone, to a value of its kind, an empty list and a list."""
    path = tmp_path / "params.yaml"
    path.write_text(REPO_PARAMS.read_text())
    for key, value in _leaves(REPO_RAW):
        for other in (_another(key, value), [], ["a", "b"]):
            _round_trip(path, [(key, other)], exact=other != ["a", "b"])
