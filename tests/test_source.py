"""nnpipe.source: a data set's bytes from a path or a URL, bounded, and pinned by sha256."""
from __future__ import annotations

import hashlib
import io
import re
import sys
import time
from types import SimpleNamespace

import pytest

import local_http
from nnpipe import source
from nnpipe.core.errors import PipelineError

SRC = "in.csv"


def _raises(message: str):
    return pytest.raises(PipelineError, match=re.escape(message))


# --- read_source: local files -----------------------------------------------------------------

def test_read_source_local_file(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(b"X1,X2,color\n1,2,a\n")
    assert source.read_source(str(path), timeout=1)[:] == b"X1,X2,color\n1,2,a\n"  # a map


def test_read_source_empty_and_proc_files(tmp_path):
    """Files that cannot be mapped (empty, or /proc's, which say they are) are read."""
    (tmp_path / "empty.csv").write_bytes(b"")
    assert source.read_source(str(tmp_path / "empty.csv"), timeout=1) == b""
    assert source.read_source("/proc/self/status", timeout=1).startswith(b"Name:")


def test_read_source_missing_file(tmp_path):
    path = tmp_path / "missing.csv"
    with _raises(f"{path}: file not found (fetch.source)"):
        source.read_source(str(path), timeout=1)


def test_read_source_directory(tmp_path):
    with _raises(f"{tmp_path}: is a directory, not a CSV file (fetch.source)"):
        source.read_source(str(tmp_path), timeout=1)


def test_is_url():
    assert source.is_url("http://x/y.csv") and source.is_url("https://x/y.csv")
    assert not source.is_url("data/spiral.csv") and not source.is_url("ftp://x/y.csv")


# --- read_source: URLs ------------------------------------------------------------------------

@pytest.fixture
def no_proxy(monkeypatch):
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")


@pytest.fixture
def static_server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    (root / "spiral.csv").write_bytes(b"X1,X2,color\n0.5,-0.25,c1\n")
    with local_http.serve(root) as url:
        yield url


def test_read_source_url_200(static_server):
    assert source.read_source(f"{static_server}/spiral.csv", timeout=5) == \
        b"X1,X2,color\n0.5,-0.25,c1\n"


def test_read_source_url_404(static_server):
    url = f"{static_server}/missing.csv"
    with pytest.raises(PipelineError, match=re.escape(f"{url}: HTTP 404")):
        source.read_source(url, timeout=5)


def test_read_source_url_500(static_server):
    url = f"{static_server}/error500/spiral.csv"
    with _raises(f"{url}: HTTP 500 Server Exploded"):
        source.read_source(url, timeout=5)


def test_read_source_unreachable_url(no_proxy):
    url = "http://127.0.0.1:1/x.csv"
    with _raises(f"{url}: cannot fetch ("):
        source.read_source(url, timeout=5)


@pytest.mark.slow
@pytest.mark.parametrize("path", ["/drip/head", "/drip/body"])
def test_a_url_dripping_bytes_stops_at_the_total_deadline(static_server, path):
    """One byte a second, each read well within the timeout: the whole answer is bounded."""
    url = f"{static_server}{path}"
    start = time.monotonic()
    with _raises(f"{url}: cannot fetch (no complete answer within 1.5 s)"):
        source.read_source(url, timeout=1.5)
    assert time.monotonic() - start < 2


@pytest.mark.slow
def test_a_url_that_never_answers_stops_at_the_deadline():
    with local_http.silent() as url:
        start = time.monotonic()
        with _raises(f"{url}/x.csv: cannot fetch (no complete answer within 1 s)"):
            source.read_source(f"{url}/x.csv", timeout=1)
    assert time.monotonic() - start < 1.5


def test_read_source_dash_is_stdin_capped(monkeypatch):
    monkeypatch.setattr("sys.stdin", SimpleNamespace(buffer=io.BytesIO(b"X1\n1\n")))
    assert source.read_source("-", timeout=1) == b"X1\n1\n"
    monkeypatch.setattr("sys.stdin", SimpleNamespace(buffer=io.BytesIO(b"X1\n1\n")))
    with _raises("-: more than the 4 bytes allowed (--max-mb)"):
        source.read_source("-", timeout=1, max_bytes=4, limit="--max-mb")


@pytest.mark.slow
def test_dvc_status_of_a_url_that_never_answers_returns_within_dvc_https_bound(tmp_path):
    """DVC checks a URL dependency itself (fetch's ``${fetch.source}``) with dvc-http's fixed
    patience: a 60 s connect and read timeout per attempt, 5 attempts; no key of .dvc/config
    reaches a dvc.yaml dependency (docs/reliability.md). It is checked here with the timeout
    cut to 2 s: the bound is retries x timeout. The fetch stage itself stops within
    fetch.timeout."""
    from dvc_http import HTTPFileSystem

    import yaml
    from e2e_util import copy_repo, run

    copy_repo(tmp_path)
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    with local_http.silent() as base:
        params["fetch"].update(source=f"{base}/spiral.csv", sha256="0" * 64, timeout=3)
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        start = time.monotonic()
        stage = run(tmp_path, sys.executable, "-m", "stages", "fetch", "--params", "params.yaml",
                    "--out", "table.parquet", "--schema", "schema.json", check=False)
        assert stage.returncode == 2 and "no complete answer within 3 s" in stage.stderr
        assert time.monotonic() - start < 3 + 5  # the stage's deadline, plus its start-up
        start = time.monotonic()  # `dvc status`, dvc-http's timeout cut from 60 s to 2 s
        status = run(tmp_path, sys.executable, "-c", "import sys, dvc_http; "
                     "H = dvc_http.HTTPFileSystem; H.REQUEST_TIMEOUT = 2; "
                     "H.__init__.__defaults__ = (None, None, 2, 2); from dvc.cli import main; "
                     "sys.exit(main(['status', 'fetch']))", check=False)
        elapsed = time.monotonic() - start
    bound = HTTPFileSystem.SESSION_RETRIES * 2 + 30  # the default: 5 * 60 + 30 s
    assert elapsed < bound, (elapsed, status.stdout, status.stderr)
    assert f"deleted:            {base}/spiral.csv" in status.stdout, status.stdout


# --- sha256 -----------------------------------------------------------------------------------

def test_check_sha256_match_and_none():
    payload = b"X1,X2,color\n"
    digest = hashlib.sha256(payload).hexdigest()
    source.check_sha256(payload, digest, SRC)
    source.check_sha256(payload, digest.upper(), SRC)
    source.check_sha256(payload, None, SRC)


def test_check_sha256_mismatch_names_both_digests():
    payload = b"X1,X2,color\n"
    actual = hashlib.sha256(payload).hexdigest()
    expected = "0" * 64
    with _raises(f"{SRC}: sha256 {actual} does not match fetch.sha256 {expected}"):
        source.check_sha256(payload, expected, SRC)
