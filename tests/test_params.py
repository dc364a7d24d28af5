"""nnpipe.params: load params.yaml into frozen dataclasses; every bad value names key and value."""
from __future__ import annotations

import copy
import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from nnpipe import params
from nnpipe.errors import PipelineError

REPO_PARAMS = Path(__file__).parents[1] / "params.yaml"


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

def test_repo_params_yaml_validates_every_section(repo_raw):
    loaded = params.load(str(REPO_PARAMS), "seed", *params.SECTIONS)
    assert loaded.seed == repo_raw["seed"]
    for name, cls in params.SECTIONS.items():
        section = getattr(loaded, name)
        assert isinstance(section, cls), name
        for field in dataclasses.fields(cls):
            expected = repo_raw[name][field.name]
            expected = tuple(expected) if isinstance(expected, list) else expected
            assert getattr(section, field.name) == expected, f"{name}.{field.name}"


def test_repo_params_yaml_has_exactly_the_known_sections_and_keys(repo_raw):
    assert set(repo_raw) == {"seed", *params.SECTIONS}
    for name, cls in params.SECTIONS.items():
        assert set(repo_raw[name]) == {f.name for f in dataclasses.fields(cls)}, name


def test_load_only_builds_the_sections_asked_for(write_params):
    # a typo in another stage's section does not stop this one
    path = write_params(_set("train_torch_mlp", "lrr", 0.1))
    loaded = params.load(path, "split")
    assert loaded.split == params.SplitParams(0.7, 0.15, 0.15)
    assert loaded.seed is None and loaded.train_torch_mlp is None and loaded.fetch is None


def test_lists_become_tuples(write_params):
    loaded = params.load(write_params(), "fetch", "data")
    assert loaded.fetch.classes == ("c1", "c3", "c2")
    assert loaded.data.features == ("X1", "X2")
    assert isinstance(loaded.data.features, tuple)


def test_int_is_accepted_where_a_number_is_expected(write_params):
    loaded = params.load(write_params(_set("train_torch_mlp", "lr", 1)), "train_torch_mlp")
    assert loaded.train_torch_mlp.lr == 1


def test_batch_size_may_be_null_or_positive_int(write_params):
    loaded = params.load(write_params(_set("train_numpy_mlp", "batch_size", 32)), "train_numpy_mlp")
    assert loaded.train_numpy_mlp.batch_size == 32
    loaded = params.load(write_params(_set("train_numpy_mlp", "batch_size", None)),
                         "train_numpy_mlp")
    assert loaded.train_numpy_mlp.batch_size is None


def test_overfit_hidden_dim_accepts_auto_and_int(write_params):
    assert params.load(write_params(), "overfit_random").overfit_random.hidden_dim == "auto"
    loaded = params.load(write_params(_set("overfit_random", "hidden_dim", 7)), "overfit_random")
    assert loaded.overfit_random.hidden_dim == 7


def test_valid_sha256_is_accepted(write_params):
    digest = "ab" * 32
    loaded = params.load(write_params(_set("fetch", "sha256", digest.upper())), "fetch")
    assert loaded.fetch.sha256 == digest.upper()


# --- frozen -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(params.SECTIONS))
def test_section_dataclasses_are_frozen(name):
    loaded = params.load(str(REPO_PARAMS), name)
    section = getattr(loaded, name)
    first = dataclasses.fields(section)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(section, first, 123)


def test_params_container_is_frozen():
    loaded = params.load(str(REPO_PARAMS), "seed")
    with pytest.raises(dataclasses.FrozenInstanceError):
        loaded.seed = 1


# --- key errors -------------------------------------------------------------------------------

def test_unknown_key_is_named(write_params):
    path = write_params(_set("train_torch_mlp", "lrr", 0.1))
    with _raises(f"{path}: unknown key train_torch_mlp.lrr (known: hidden_dim, lr,"):
        params.load(path, "train_torch_mlp")


def test_missing_key_is_named(write_params):
    path = write_params(lambda raw: raw["train_torch_mlp"].pop("lr"))
    with _raises(f"{path}: missing key train_torch_mlp.lr"):
        params.load(path, "train_torch_mlp")


def test_missing_section_is_named(write_params):
    path = write_params(lambda raw: raw.pop("plot"))
    with _raises(f"{path}: missing key plot"):
        params.load(path, "plot")


def test_missing_seed_is_named(write_params):
    path = write_params(lambda raw: raw.pop("seed"))
    with _raises(f"{path}: missing key seed"):
        params.load(path, "seed")


# --- type errors ------------------------------------------------------------------------------

@pytest.mark.parametrize("section, key, value, message", [
    ("train_torch_mlp", "lr", "0.01", "train_torch_mlp.lr='0.01' must be a finite number"),
    ("train_torch_mlp", "lr", float("nan"), "train_torch_mlp.lr=nan must be a finite number"),
    ("train_linear", "lr", float("inf"), "train_linear.lr=inf must be a finite number"),
    ("train_torch_mlp", "lr", True, "train_torch_mlp.lr=True must be a finite number"),
    ("train_torch_mlp", "hidden_dim", True, "train_torch_mlp.hidden_dim=True must be an integer"),
    ("train_torch_mlp", "epochs", 10.0, "train_torch_mlp.epochs=10.0 must be an integer"),
    ("train_numpy_mlp", "epochs", "10", "train_numpy_mlp.epochs='10' must be an integer"),
    ("train_numpy_mlp", "batch_size", 8.0,
     "train_numpy_mlp.batch_size=8.0 must be null or an integer"),
    ("overfit_random", "hidden_dim", "big",
     "overfit_random.hidden_dim='big' must be an integer or 'auto'"),
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
        params.load(path, section)


# --- range errors -----------------------------------------------------------------------------

@pytest.mark.parametrize("section, key, value, message", [
    ("split", "val_size", 1.2, "split.val_size=1.2 must be in (0, 1)"),
    ("split", "train_size", 0, "split.train_size=0 must be in (0, 1)"),
    ("split", "test_size", 1.0, "split.test_size=1.0 must be in (0, 1)"),
    ("train_torch_mlp", "lr", -0.1, "train_torch_mlp.lr=-0.1 must be > 0"),
    ("train_numpy_mlp", "lr", 0.0, "train_numpy_mlp.lr=0.0 must be > 0"),
    ("train_torch_mlp", "epochs", 0, "train_torch_mlp.epochs=0 must be > 0"),
    ("train_linear", "hidden_dim", 0, "train_linear.hidden_dim=0 must be > 0"),
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
        params.load(path, section)


def test_noise_zero_is_allowed(write_params):
    assert params.load(write_params(_set("fetch", "noise", 0)), "fetch").fetch.noise == 0


def test_dropout_zero_is_allowed(write_params):
    loaded = params.load(write_params(_set("train_torch_mlp", "dropout_p", 0)), "train_torch_mlp")
    assert loaded.train_torch_mlp.dropout_p == 0


def test_split_sizes_must_sum_to_one(write_params):
    def edit(raw):
        raw["split"].update(train_size=0.8, val_size=0.15, test_size=0.15)
    path = write_params(edit)
    with _raises(f"{path}: split.train_size + val_size + test_size=1.1 must sum to 1"):
        params.load(path, "split")


def test_split_sizes_summing_to_one_in_float_arithmetic_pass(write_params):
    def edit(raw):
        raw["split"].update(train_size=0.6, val_size=0.3, test_size=0.1)
    loaded = params.load(write_params(edit), "split")
    assert loaded.split == params.SplitParams(0.6, 0.3, 0.1)


# --- seed -------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [-1, 2**32, "1234", 12.0, True, None])
def test_invalid_seed_is_named(write_params, value):
    path = write_params(lambda raw: raw.__setitem__("seed", value))
    with _raises(f"params.yaml: seed={value!r} must be an integer in [0, 2**32)"):
        params.load(path, "seed")


@pytest.mark.parametrize("value", [0, 2**32 - 1])
def test_seed_bounds_are_accepted(write_params, value):
    path = write_params(lambda raw: raw.__setitem__("seed", value))
    assert params.load(path, "seed").seed == value


# --- sha256 -----------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["abc", "g" * 64, "a" * 63, "a" * 65, 12345])
def test_bad_sha256_is_named(write_params, value):
    path = write_params(_set("fetch", "sha256", value))
    with _raises(f"{path}: fetch.sha256={value!r} must be null or a 64-digit hex sha256"):
        params.load(path, "fetch")


# --- the file itself --------------------------------------------------------------------------

def test_missing_file(tmp_path):
    path = tmp_path / "nope" / "params.yaml"
    with _raises(f"{path}: file not found"):
        params.load(str(path), "seed")


def test_invalid_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("seed: 1\nsplit:\n  train_size: [0.7\n  val_size: 0.15\n", encoding="utf-8")
    with pytest.raises(PipelineError, match=re.escape(f"{path}: not valid YAML") + r" \(line \d+\)"):
        params.load(str(path), "seed")


@pytest.mark.parametrize("text", ["", "- 1\n- 2\n", "just a string\n"])
def test_top_level_must_be_a_mapping(tmp_path, text):
    path = tmp_path / "params.yaml"
    path.write_text(text, encoding="utf-8")
    with _raises(f"{path}: must be a mapping of sections"):
        params.load(str(path), "seed")


@pytest.mark.parametrize("value", [[0.7, 0.15, 0.15], "0.7", None])
def test_non_mapping_section_is_named(write_params, value):
    path = write_params(lambda raw: raw.__setitem__("split", value))
    with _raises(f"{path}: section 'split' must be a mapping, got {value!r}"):
        params.load(path, "split")


def test_build_section_default_origin():
    with _raises("params.yaml: unknown key plot.dpi"):
        params.build_section("plot", {"max_points": 10, "grid_size": 5, "dpi": 3})
    section = params.build_section("plot", {"max_points": 10, "grid_size": 5})
    assert section == params.PlotParams(max_points=10, grid_size=5)


# --- YAML as DVC reads it, and hostile YAML ---------------------------------------------------

def _text(tmp_path, text: str) -> str:
    path = tmp_path / "params.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_hand_written_exponent_numbers_are_floats_as_dvc_reads_them(tmp_path, repo_raw):
    text = yaml.safe_dump(repo_raw, sort_keys=False).replace("lr: 0.01\n", "lr: 1e-3\n", 1)
    assert "lr: 1e-3" in text
    loaded = params.load(_text(tmp_path, text), "train_linear")
    assert loaded.train_linear.lr == 0.001 and isinstance(loaded.train_linear.lr, float)
    from dvc.utils.serialize import parse_yaml  # the reader `dvc params diff` uses

    assert params.read_yaml(_text(tmp_path, text)) == parse_yaml(text, "params.yaml")


def test_yes_is_a_string_as_in_yaml_1_2_so_a_bool_key_refuses_it(tmp_path, repo_raw):
    text = yaml.safe_dump(repo_raw, sort_keys=False).replace("portable: true", "portable: yes")
    with _raises("math.portable='yes' must be true or false"):
        params.load(_text(tmp_path, text), "math")


@pytest.mark.parametrize("text, message", [
    ("a: &x [1, 2]\nb: *x\n", "YAML aliases (*name) are not accepted (line 2)"),
    ("a: " + "[" * 5000 + "]" * 5000 + "\n", "nested deeper than 20 levels (line 1)"),
    ("seed: " + "9" * 5000 + "\n", "an integer of 5000 digits (at most 30) (line 1)"),
    ("a: [\n", "not valid YAML"),
])
def test_hostile_yaml_is_refused_before_it_expands(tmp_path, text, message):
    with _raises(f"params.yaml: {message}"):
        params.read_yaml(_text(tmp_path, text))


@pytest.mark.parametrize("section, key, value, message", [
    ("train_torch_mlp", "hidden_dim", 10**12, "must be at most 100000"),
    ("train_numpy_mlp", "epochs", 10**7, "must be at most 1000000"),
    ("fetch", "samples_per_class", 10**8, "must be at most 30000000"),
    ("plot", "grid_size", 10**5, "must be at most 2001"),
])
def test_absurd_sizes_are_refused(write_params, section, key, value, message):
    with _raises(f"{section}.{key}={value} {message}"):
        params.load(write_params(_set(section, key, value)), section)


def test_echoed_values_are_cut_short(write_params):
    with pytest.raises(PipelineError) as caught:
        params.load(write_params(_set("train_torch_mlp", "init", "z" * 10**6)), "train_torch_mlp")
    assert len(str(caught.value)) < 300 and "(1000002 characters)" in str(caught.value)
