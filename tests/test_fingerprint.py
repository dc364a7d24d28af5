"""fingerprint: this CPU's kernels against real Intel and AMD CPUs', and the proof that
the training stages call only kernels the fingerprint covers, none of them approximate."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

import fingerprint
from deps import ROOT
from fingerprint import __main__ as command, kernels, ops, record
from nnpipe.core import portable

DATA = ROOT / "tests" / "data" / "portable"
REFERENCE = DATA / "pins-aten_avx2.json"  # tests/data/portable/README.md: an Intel Xeon
REFERENCES = {  # real CPUs (tests/data/portable/README.md): file, vendor, kernels it covers
    "intel-xeon-avx512": (REFERENCE, "GenuineIntel", 62),
    "amd-zen4-avx512": (DATA / "amd-zen4-avx512.json", "AuthenticAMD", 112),
}


def _reference() -> dict:
    return json.loads(REFERENCE.read_text(encoding="utf-8"))


def _kernels(fp: dict) -> list[str]:
    return sorted(k for k in fp if not k.startswith("_"))


def _vendor() -> str:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


# --- this machine against the real CPU references ------------------------------------------------

@pytest.fixture(scope="module")
def mine() -> dict:
    """This machine's fingerprint, computed as a user would: a fresh, pinned process (~13 s)."""
    result = subprocess.run([sys.executable, "-m", "fingerprint"], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


@pytest.mark.slow
@pytest.mark.parametrize("cpu", REFERENCES)
def test_this_cpu_computes_every_exact_kernel_as_each_real_cpu_reference(mine, cpu):
    path, vendor, count = REFERENCES[cpu]
    reference = json.loads(path.read_text(encoding="utf-8"))
    assert portable.mismatches(mine["_kernels"]) == [], mine["_kernels"]  # the pins held
    assert mine["_kernels"] == reference["_kernels"]
    differ, approximate, compared = fingerprint.compare(mine, reference)
    assert compared == len(_kernels(reference)) == count  # each is computed here too
    assert differ == [], (f"{len(differ)} exact kernels differ from the {cpu} reference "
                          f"{path.name}: {', '.join(differ)}")
    assert all(fingerprint.is_approximate(k) for k in approximate)
    if _vendor() != vendor:
        # The negative control: on another vendor's CPU the approximate kernels do differ, so
        # the comparison can fail. torch.sqrt on float32 at both shapes, at least.
        sqrt = {k for k in _kernels(reference) if k.split(".", 1)[1].startswith("sqrt(")}
        assert len(sqrt) == 2 and sqrt <= set(approximate), approximate


def test_the_op_map_names_torch_kernels_computed_in_process():
    out: dict[str, str] = {}
    kernels.torch_kernels(out)
    kernels.training_kernels(out)
    for op in [*fingerprint.TORCH_OPS, *fingerprint.APPROXIMATE_OPS]:
        missing = [k for k in fingerprint.op_keys(op) if k not in out]
        assert not missing, f"{op}: {missing}"
    reference = _kernels(_reference())
    assert set(reference) <= set(out)  # the reference's 62 keys, computed the same way


# --- compare() and is_approximate() ----------------------------------------------------------

@pytest.mark.parametrize("key, approximate", [
    ("spiral.adam5", True), ("overfit.adam5.foreach", True),
    ("spiral.sqrt(float32, n=105000)", True), ("overfit.sqrt(float32, n=31710)", True),
    ("spiral.adam5.fused", False), ("spiral.relu", False), ("fetch.sqrt", False),
    ("overfit.init.xavier_normal", False), ("plot.png", False)])
def test_is_approximate(key, approximate):
    assert fingerprint.is_approximate(key) is approximate


def test_compare_names_each_differing_kernel_and_sets_the_approximate_apart():
    reference = _reference()
    other = dict(reference, _kernels={"torch_capability": "AVX512"}, _env={})
    other["spiral.relu"] = "0" * 16
    other["overfit.grad.dW1"] = "1" * 16
    other["spiral.adam5"] = "2" * 16
    other["overfit.sqrt(float32, n=31710)"] = "3" * 16
    other["only.here"] = "4" * 16  # a kernel one side lacks is not compared
    differ, approximate, compared = fingerprint.compare(other, reference)
    assert differ == ["overfit.grad.dW1", "spiral.relu"]
    assert approximate == ["overfit.sqrt(float32, n=31710)", "spiral.adam5"]
    assert compared == len(_kernels(reference))
    assert fingerprint.compare(reference, reference) == ([], [], compared)


@pytest.mark.parametrize("changed, code, words", [
    ([], 0, "0 differ; approximate kernels (used by no stage) differing: 0"),
    (["spiral.adam5.foreach"], 0, "0 differ; approximate kernels (used by no stage) "
                                  "differing: 1"),
    (["spiral.adam5.fused", "overfit.relu"], 1, "2 differ (overfit.relu, spiral.adam5.fused); "
                                                "approximate kernels (used by no stage) "
                                                "differing: 0"),
])
def test_main_compare_reports_and_fails_only_on_exact_kernels(monkeypatch, capsys, changed,
                                                              code, words):
    mine = {**_reference(), **{k: "f" * 16 for k in changed}}
    monkeypatch.setattr(kernels, "compute", lambda: mine)
    with pytest.raises(SystemExit) as caught:
        command.main(["--compare", str(REFERENCE)])
    assert caught.value.code == code
    assert capsys.readouterr().out == f"62 kernels compared with {REFERENCE}: {words}\n"


# --- the training stages call only covered, exact kernels (fingerprint/ops.json) --------------

RECORDED = json.loads(ops.OPS_FILE.read_text(encoding="utf-8"))


@pytest.mark.slow
def test_the_recorded_ops_are_those_training_and_the_kernels_call_now():
    """Re-records (profiling training.fit in each torch configuration and each kernel)."""
    assert record.record() == RECORDED, (f"{ops.OPS_FILE} is stale: run `{record.COMMAND}` "
                                         "and commit it")


@pytest.mark.parametrize("run", RECORDED["training"])
def test_training_calls_no_approximate_op_and_uses_fused_adam(run):
    called = set(RECORDED["training"][run])
    assert not sorted(called & set(fingerprint.APPROXIMATE_OPS)), run
    assert not any("sqrt" in op for op in called), sorted(called)
    assert "aten::_fused_adam_" in called
    assert {"aten::bernoulli_", "aten::normal_", "aten::randperm", "aten::index",
            "aten::clamp_min", "aten::threshold_backward"} <= set().union(
        *map(set, RECORDED["training"].values()))  # dropout, init, batches, relu: profiled


def test_every_compute_op_of_training_is_covered_by_exact_kernels():
    called = set().union(*map(set, RECORDED["training"].values())) - fingerprint.DATA_OPS
    assert sorted(fingerprint.TORCH_OPS) == sorted(called)
    uncovered = [op for op in called if not fingerprint.op_keys(op)]
    assert not uncovered, f"ops no fingerprint kernel covers: {uncovered} (add a kernel)"
    for op in fingerprint.TORCH_OPS:
        assert not [k for k in fingerprint.op_keys(op) if fingerprint.is_approximate(k)], op
    for op in fingerprint.APPROXIMATE_OPS:
        assert all(fingerprint.is_approximate(k) for k in fingerprint.op_keys(op)), op
    assert not set(fingerprint.TORCH_OPS) & fingerprint.DATA_OPS


@pytest.mark.parametrize("options, op", [({"foreach": False}, "aten::sqrt"),
                                         ({"foreach": True}, "aten::_foreach_sqrt")])
def test_the_profiler_sees_the_approximate_op_of_unfused_adam(options, op):
    """The negative control: torch.optim.Adam without fused=True calls torch.sqrt, and the
    profiling above would see it."""
    weights = [torch.ones(4, 3, requires_grad=True), torch.ones(3, requires_grad=True)]
    optimizer = torch.optim.Adam(weights, lr=0.1, **options)
    for w in weights:
        w.grad = torch.full_like(w, 0.5)
    called = record.aten_ops(optimizer.step)
    assert op in called and op in fingerprint.APPROXIMATE_OPS
    assert "aten::_fused_adam_" not in called
