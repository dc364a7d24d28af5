"""nnpipe.core.params: params.yaml into frozen pydantic models; every bad value names key and value."""
from __future__ import annotations

import copy
import re
from pathlib import Path

import pydantic
import pytest
import yaml

from nnpipe.core import params, yamlfile
from nnpipe.core.errors import PipelineError

REPO_PARAMS = Path(__file__).parents[1] / "params.yaml"
# The repo's training sections and their trainer kinds (dvc.yaml's train stage).
KINDS = {f"train_{m}": kind for m, kind in yaml.safe_load(
    (REPO_PARAMS.parent / "dvc.yaml").read_text())["stages"]["train"]["foreach"].items()}


def load(path, *names: str) -> params.Params:
    """params.load with the repo's training sections known by their kinds."""
    return params.load(str(path), *names, kinds={n: KINDS[n] for n in names if n in KINDS})


@pytest.fixture(scope="module")
def repo_raw() -> dict:
    with open(REPO_PARAMS, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


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


# --- the repo's own params.yaml ---------------------------------------------------------------

def _schemas() -> dict[str, type]:
    return {**params.SECTIONS, **{n: params.TRAINERS[k] for n, k in KINDS.items()}}


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


def test_repo_params_yaml_has_exactly_the_known_sections_and_keys(repo_raw):
    assert set(repo_raw) == {"seed", *_schemas()}
    for name, cls in _schemas().items():
        assert set(repo_raw[name]) == set(cls.model_fields), name


def test_every_field_is_required_params_yaml_holds_the_values():
    for cls in (*params.SECTIONS.values(), *params.TRAINERS.values()):
        assert all(f.is_required() for f in cls.model_fields.values()), cls.__name__


def test_load_only_builds_the_sections_asked_for(write_params):
    # a typo in another stage's section does not stop this one
    path = write_params(_set("train_torch_mlp", "lrr", 0.1))
    loaded = load(path, "split")
    assert loaded.split == params.SplitParams(train_size=0.7, val_size=0.15, test_size=0.15)
    for name in ("seed", "train_torch_mlp", "fetch"):
        with pytest.raises(AttributeError, match=f"section '{name}' was not loaded"):
            getattr(loaded, name)


def test_a_section_is_validated_as_the_kind_it_is_given(write_params):
    """Sections are data: a new train_wide_mlp is a torch MLP because dvc.yaml says so."""
    def edit(raw):
        raw["train_wide_mlp"] = dict(raw["train_torch_mlp"], hidden_dims=[256])
    path = write_params(edit)
    wide = params.load(path, "train_wide_mlp", kinds={"train_wide_mlp": "torch_mlp"})
    assert type(wide["train_wide_mlp"]) is params.TorchMLPParams
    assert wide.train_wide_mlp.hidden_dims == (256,)
    with _raises(f"{path}: unknown key train_wide_mlp.dropout_p (known: hidden_dims, lr,"):
        params.load(path, "train_wide_mlp", kinds={"train_wide_mlp": "numpy_mlp"})


def test_a_section_without_a_schema_is_a_programming_error(write_params):
    path = write_params()
    with pytest.raises(KeyError, match="no schema for params section 'train_torch_mlp'"):
        params.load(path, "train_torch_mlp")
    with pytest.raises(KeyError, match="no schema"):
        params.load(path, "train_torch_mlp", kinds={"train_torch_mlp": "svm"})


def test_lists_become_tuples(write_params):
    loaded = load(write_params(), "fetch", "data")
    assert loaded.fetch.classes == ("c1", "c3", "c2")
    assert loaded.data.features == ("X1", "X2")
    assert isinstance(loaded.data.features, tuple)


def test_int_is_accepted_where_a_number_is_expected(write_params):
    loaded = load(write_params(_set("train_torch_mlp", "lr", 1)), "train_torch_mlp")
    assert loaded.train_torch_mlp.lr == 1


def test_batch_size_may_be_null_or_positive_int(write_params):
    loaded = load(write_params(_set("train_numpy_mlp", "batch_size", 32)), "train_numpy_mlp")
    assert loaded.train_numpy_mlp.batch_size == 32
    loaded = load(write_params(_set("train_numpy_mlp", "batch_size", None)),
                         "train_numpy_mlp")
    assert loaded.train_numpy_mlp.batch_size is None


def test_overfit_hidden_dims_accepts_auto_and_a_list(write_params):
    assert load(write_params(), "overfit_random").overfit_random.hidden_dims == "auto"
    loaded = load(write_params(_set("overfit_random", "hidden_dims", [7, 5])), "overfit_random")
    assert loaded.overfit_random.hidden_dims == (7, 5)


@pytest.mark.parametrize("widths", [[1], [100], [64, 32], [8] * params.MAX_LAYERS])
def test_hidden_dims_takes_any_depth(write_params, widths):
    loaded = load(write_params(_set("train_numpy_mlp", "hidden_dims", widths)), "train_numpy_mlp")
    assert loaded.train_numpy_mlp.hidden_dims == tuple(widths)


def test_valid_sha256_is_accepted(write_params):
    digest = "ab" * 32
    loaded = load(write_params(_set("fetch", "sha256", digest.upper())), "fetch")
    assert loaded.fetch.sha256 == digest.upper()


# --- frozen -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(_schemas()))
def test_sections_are_frozen(name):
    section = load(REPO_PARAMS, name)[name]
    first = next(iter(type(section).model_fields))
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        setattr(section, first, 123)


def test_params_container_is_frozen():
    loaded = load(REPO_PARAMS, "seed")
    with pytest.raises(AttributeError, match="frozen"):
        loaded.seed = 1


# --- key errors -------------------------------------------------------------------------------

def test_unknown_key_is_named(write_params):
    path = write_params(_set("train_torch_mlp", "lrr", 0.1))
    with _raises(f"{path}: unknown key train_torch_mlp.lrr (known: hidden_dims, lr,"):
        load(path, "train_torch_mlp")


def test_missing_key_is_named(write_params):
    path = write_params(lambda raw: raw["train_torch_mlp"].pop("lr"))
    with _raises(f"{path}: missing key train_torch_mlp.lr"):
        load(path, "train_torch_mlp")


def test_missing_section_is_named(write_params):
    path = write_params(lambda raw: raw.pop("plot"))
    with _raises(f"{path}: missing key plot"):
        load(path, "plot")


def test_missing_seed_is_named(write_params):
    path = write_params(lambda raw: raw.pop("seed"))
    with _raises(f"{path}: missing key seed"):
        load(path, "seed")


# --- type errors ------------------------------------------------------------------------------

@pytest.mark.parametrize("section, key, value, message", [
    ("train_torch_mlp", "lr", "0.01", "train_torch_mlp.lr='0.01' must be a finite number"),
    ("train_torch_mlp", "lr", float("nan"), "train_torch_mlp.lr=nan must be a finite number"),
    ("train_linear", "lr", float("inf"), "train_linear.lr=inf must be a finite number"),
    ("train_torch_mlp", "lr", True, "train_torch_mlp.lr=True must be a finite number"),
    ("train_torch_mlp", "hidden_dims", True,
     "train_torch_mlp.hidden_dims=True must be a list of integers"),
    ("train_torch_mlp", "hidden_dims", 100, "train_torch_mlp.hidden_dims=100 must be a list of "
                                            "integers"),
    ("train_torch_mlp", "hidden_dims", [32, 2.5],
     "train_torch_mlp.hidden_dims=[32, 2.5] must be a list of integers"),
    ("train_torch_mlp", "hidden_dims", [True], "train_torch_mlp.hidden_dims=[True] must be a "
                                               "list of integers"),
    ("train_torch_mlp", "epochs", 10.0, "train_torch_mlp.epochs=10.0 must be an integer"),
    ("train_numpy_mlp", "epochs", "10", "train_numpy_mlp.epochs='10' must be an integer"),
    ("train_numpy_mlp", "batch_size", 8.0,
     "train_numpy_mlp.batch_size=8.0 must be null or an integer"),
    ("overfit_random", "hidden_dims", "big",
     "overfit_random.hidden_dims='big' must be 'auto' or a list of integers"),
    ("overfit_random", "hidden_dims", 302,
     "overfit_random.hidden_dims=302 must be 'auto' or a list of integers"),
    ("fetch", "source", "", "fetch.source='' must be a string"),
    ("fetch", "source", 5, "fetch.source=5 must be a string"),
    ("fetch", "classes", "c1", "fetch.classes='c1' must be a list of strings"),
    ("fetch", "classes", ["c1", 2], "fetch.classes=['c1', 2] must be a list of strings"),
    ("data", "features", ["X1", ""], "data.features=['X1', ''] must be a list of strings"),
    ("data", "target", None, "data.target=None must be a string"),
    ("fetch", "timeout", None, "fetch.timeout=None must be a finite number"),
])
def test_wrong_type_names_key_and_value(write_params, section, key, value, message):
    path = write_params(_set(section, key, value))
    with _raises(f"{path}: {message}"):
        load(path, section)


# --- range errors -----------------------------------------------------------------------------

@pytest.mark.parametrize("section, key, value, message", [
    ("split", "val_size", 1.2, "split.val_size=1.2 must be in (0, 1)"),
    ("split", "train_size", 0, "split.train_size=0 must be in (0, 1)"),
    ("split", "test_size", 1.0, "split.test_size=1.0 must be in (0, 1)"),
    ("train_torch_mlp", "lr", -0.1, "train_torch_mlp.lr=-0.1 must be > 0"),
    ("train_numpy_mlp", "lr", 0.0, "train_numpy_mlp.lr=0.0 must be > 0"),
    ("train_torch_mlp", "epochs", 0, "train_torch_mlp.epochs=0 must be > 0"),
    ("train_linear", "hidden_dims", [0], "train_linear.hidden_dims=[0] must be a list of 1 to "
                                         "20 widths, each > 0 and at most 100000"),
    ("train_linear", "hidden_dims", [], "train_linear.hidden_dims=[] must not be empty"),
    ("train_numpy_mlp", "hidden_dims", [8] * 21,
     "train_numpy_mlp.hidden_dims=[8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8]"
     " must hold at most 20"),
    ("overfit_random", "hidden_dims", [64, -1], "overfit_random.hidden_dims=[64, -1] must be "
                                                "'auto' or a list of 1 to 20 widths"),
    ("train_torch_mlp", "dropout_p", 1.0, "train_torch_mlp.dropout_p=1.0 must be in [0, 1)"),
    ("overfit_random", "dropout_p", -0.1, "overfit_random.dropout_p=-0.1 must be in [0, 1)"),
    ("train_torch_mlp", "batch_size", 0, "train_torch_mlp.batch_size=0 must be null or > 0"),
    ("train_linear", "batch_size", -4, "train_linear.batch_size=-4 must be null or > 0"),
    ("train_torch_mlp", "init", "he", "train_torch_mlp.init='he' must be one of default, "
                                      "xavier_normal"),
    ("overfit_random", "init", "Default", "overfit_random.init='Default' must be one of"),
    ("train_numpy_mlp", "init_scale", 0, "train_numpy_mlp.init_scale=0 must be > 0"),
    ("train_numpy_mlp", "log_every", 0, "train_numpy_mlp.log_every=0 must be > 0"),
    ("fetch", "noise", -0.2, "fetch.noise=-0.2 must be >= 0"),
    ("fetch", "timeout", 0, "fetch.timeout=0 must be > 0"),
    ("fetch", "samples_per_class", 0, "fetch.samples_per_class=0 must be > 0"),
    ("fetch", "classes", [], "fetch.classes=[] must not be empty"),
    ("fetch", "classes", ["a", "b", "a"], "fetch.classes=['a', 'b', 'a'] must not repeat a name"),
    ("data", "features", [], "data.features=[] must not be empty"),
    ("plot", "grid_size", 0, "plot.grid_size=0 must be > 0"),
    ("overfit_random", "num_classes", -1, "overfit_random.num_classes=-1 must be > 0"),
])
def test_out_of_range_names_key_and_value(write_params, section, key, value, message):
    path = write_params(_set(section, key, value))
    with _raises(f"{path}: {message}"):
        load(path, section)


def test_noise_zero_is_allowed(write_params):
    assert load(write_params(_set("fetch", "noise", 0)), "fetch").fetch.noise == 0


def test_dropout_zero_is_allowed(write_params):
    loaded = load(write_params(_set("train_torch_mlp", "dropout_p", 0)), "train_torch_mlp")
    assert loaded.train_torch_mlp.dropout_p == 0


def test_split_sizes_must_sum_to_one(write_params):
    def edit(raw):
        raw["split"].update(train_size=0.8, val_size=0.15, test_size=0.15)
    path = write_params(edit)
    with _raises(f"{path}: split.train_size + val_size + test_size=1.1 must sum to 1"):
        load(path, "split")


def test_split_sizes_summing_to_one_in_float_arithmetic_pass(write_params):
    def edit(raw):
        raw["split"].update(train_size=0.6, val_size=0.3, test_size=0.1)
    loaded = load(write_params(edit), "split")
    assert loaded.split == params.SplitParams(train_size=0.6, val_size=0.3, test_size=0.1)


# --- seed -------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [-1, 2**32, "1234", 12.0, True, None])
def test_invalid_seed_is_named(write_params, value):
    path = write_params(lambda raw: raw.__setitem__("seed", value))
    with _raises(f"params.yaml: seed={value!r} must be an integer in [0, 2**32)"):
        load(path, "seed")


@pytest.mark.parametrize("value", [0, 2**32 - 1])
def test_seed_bounds_are_accepted(write_params, value):
    path = write_params(lambda raw: raw.__setitem__("seed", value))
    assert load(path, "seed").seed == value


# --- sha256 -----------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["abc", "g" * 64, "a" * 63, "a" * 65, 12345])
def test_bad_sha256_is_named(write_params, value):
    path = write_params(_set("fetch", "sha256", value))
    with _raises(f"{path}: fetch.sha256={value!r} must be null or a 64-digit hex sha256"):
        load(path, "fetch")


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
    assert section == params.PlotParams(max_points=10, grid_size=5)
    with _raises("params.yaml: missing key plot.grid_size"):
        params.build_section("plot", {"max_points": 10})


# --- YAML as DVC reads it, and hostile YAML ---------------------------------------------------

def _text(tmp_path, text: str) -> str:
    path = tmp_path / "params.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_hand_written_exponent_numbers_are_floats_as_dvc_reads_them(tmp_path, repo_raw):
    text = yaml.safe_dump(repo_raw, sort_keys=False).replace("lr: 0.01\n", "lr: 1e-3\n", 1)
    assert "lr: 1e-3" in text
    loaded = load(_text(tmp_path, text), "train_linear")
    assert loaded.train_linear.lr == 0.001 and isinstance(loaded.train_linear.lr, float)
    from dvc.utils.serialize import parse_yaml  # the reader `dvc params diff` uses

    assert yamlfile.read_yaml(_text(tmp_path, text)) == parse_yaml(text, "params.yaml")


def test_yes_is_a_string_as_in_yaml_1_2_so_a_bool_key_refuses_it(tmp_path, repo_raw):
    text = yaml.safe_dump(repo_raw, sort_keys=False).replace("portable: true", "portable: yes")
    with _raises("math.portable='yes' must be true or false"):
        load(_text(tmp_path, text), "math")


@pytest.mark.parametrize("text, message", [
    ("a: &x [1, 2]\nb: *x\n", "YAML aliases (*name) are not accepted (line 2)"),
    ("a: " + "[" * 5000 + "]" * 5000 + "\n", "nested deeper than 20 levels (line 1)"),
    ("seed: " + "9" * 5000 + "\n", "an integer of 5000 digits (at most 30) (line 1)"),
    ("a: [\n", "not valid YAML"),
])
def test_hostile_yaml_is_refused_before_it_expands(tmp_path, text, message):
    with _raises(f"params.yaml: {message}"):
        yamlfile.read_yaml(_text(tmp_path, text))


@pytest.mark.parametrize("section, key, value, message", [
    ("train_torch_mlp", "hidden_dims", [10**12], "must be a list of 1 to 20 widths, each > 0 and "
                                                 "at most 100000"),
    ("train_numpy_mlp", "epochs", 10**7, "must be at most 1000000"),
    ("fetch", "samples_per_class", 10**8, "must be at most 30000000"),
    ("plot", "grid_size", 10**5, "must be at most 2001"),
])
def test_absurd_sizes_are_refused(write_params, section, key, value, message):
    with _raises(f"{section}.{key}={value} {message}"):
        load(write_params(_set(section, key, value)), section)


@pytest.mark.parametrize("section, widths", [("train_torch_mlp", [100_000, 100_000]),
                                             ("overfit_random", [8, 10_000, 10_000])])
def test_deep_lists_that_would_allocate_too_many_weights_are_refused(write_params, section,
                                                                     widths):
    weights = sum(a * b for a, b in zip(widths, widths[1:]))
    with _raises(f"{section}.hidden_dims={widths} has {weights} hidden-to-hidden weights, "
                 f"at most {params.MAX_WEIGHTS}"):
        load(write_params(_set(section, "hidden_dims", widths)), section)


def test_overfit_auto_width_is_bounded(write_params):
    path = write_params(_set("overfit_random", "samples_per_class", 100_000))
    with _raises("overfit_random.hidden_dims=auto gives 600002 hidden units, at most 100000"):
        load(path, "overfit_random")


def test_echoed_values_are_cut_short(write_params):
    with pytest.raises(PipelineError) as caught:
        load(write_params(_set("train_torch_mlp", "init", "z" * 10**6)), "train_torch_mlp")
    assert len(str(caught.value)) < 300 and "(1000002 characters)" in str(caught.value)
