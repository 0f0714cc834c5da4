"""Outputs and interruption: an unwritable -o fails before any work, a failed write keeps the
result elsewhere, Ctrl-C exits cleanly."""

from __future__ import annotations

import errno
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from tpc import api, cli, compiler, irgen, output

ROOT = Path(__file__).resolve().parent.parent
KEPLER = str(ROOT / "examples" / "kepler.ham")


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TPC_CACHE_DIR", str(tmp_path / "cache"))


def tpc(capsys, *argv) -> tuple[int, str, str]:
    rc = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if anything gets compiled."""
    def refuse(*args, **kwargs):
        raise AssertionError("compiled before checking the output path")

    monkeypatch.setattr(api, "compile", refuse)
    monkeypatch.setattr(compiler, "compile_stage", refuse)


def unwritable(tmp_path: Path, kind: str) -> tuple[str, str]:
    """An output path of the given kind and the reason tpc gives for it."""
    if kind == "missing-directory":
        missing = tmp_path / "nowhere"
        return str(missing / "out.npz"), f"directory '{missing}' does not exist"
    if kind == "directory":
        return str(tmp_path), "it is a directory"
    (tmp_path / "file").write_text("x")
    return str(tmp_path / "file" / "out.npz"), f"'{tmp_path / 'file'}' is not a directory"


KINDS = ["missing-directory", "directory", "below-a-file"]


@pytest.mark.parametrize("kind", KINDS)
def test_run_output_checked_first(capsys, tmp_path, no_work, kind):
    path, reason = unwritable(tmp_path, kind)
    rc, _, err = tpc(capsys, "run", KEPLER, "-o", path)
    assert rc == 1 and err.strip() == f"error: cannot write '{path}': {reason}"


@pytest.mark.parametrize("kind", KINDS)
def test_compile_output_checked_first(capsys, tmp_path, no_work, kind):
    path, reason = unwritable(tmp_path, kind)
    rc, _, err = tpc(capsys, "compile", KEPLER, "--emit=sym", "-o", path)
    assert rc == 1 and err.strip() == f"error: cannot write '{path}': {reason}"


def test_read_only_directory(capsys, tmp_path, no_work, monkeypatch):
    """Root ignores directory permissions, so there the refusal is simulated."""
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    if os.geteuid() == 0:
        def denied(*args, **kwargs):
            raise PermissionError(errno.EACCES, "Permission denied")

        monkeypatch.setattr(output.tempfile, "mkstemp", denied)
    path = ro / "out.npz"
    rc, _, err = tpc(capsys, "run", KEPLER, "-o", path)
    assert rc == 1 and err.strip() == f"error: cannot write '{path}': Permission denied"


def test_read_only_file(capsys, tmp_path, no_work, monkeypatch):
    path = tmp_path / "out.ptx"
    path.write_text("old")
    path.chmod(0o444)
    if os.geteuid() == 0:
        monkeypatch.setattr(output.os, "access", lambda p, mode: False)
    rc, _, err = tpc(capsys, "compile", KEPLER, "-o", path)
    assert rc == 1 and err.strip() == f"error: cannot write '{path}': permission denied"
    assert path.read_text() == "old"


def disk_full(monkeypatch) -> None:
    """Writes fail when the data is flushed to disk, as they do on a full disk."""
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(output.os, "fsync", full)


def test_disk_full_keeps_the_run(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(output.tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    out = tmp_path / "k.npz"
    out.write_bytes(b"previous")
    disk_full(monkeypatch)
    rc, _, err = tpc(capsys, "run", KEPLER, "--steps", 200, "-o", out, "--quiet")
    assert rc == 1 and "Traceback" not in err
    fallback = next((tmp_path / "tmp").glob("tpc-k-*.npz"))
    assert err.strip() == (f"error: cannot write '{out}': No space left on device; "
                           f"the result was saved to '{fallback}' instead")
    with np.load(fallback) as d:
        assert d["q"].shape == (3, 3) and int(d["steps_done"]) == 200
    assert out.read_bytes() == b"previous"  # the old file is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "k.npz", "tmp"]


def test_disk_full_on_compile_output(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(output.tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    out = tmp_path / "k.mlir"
    disk_full(monkeypatch)
    rc, _, err = tpc(capsys, "compile", KEPLER, "--emit=ham", "-o", out)
    fallback = next((tmp_path / "tmp").glob("tpc-k-*.mlir"))
    assert rc == 1 and err.strip().endswith(f"the result was saved to '{fallback}' instead")
    assert "ham.system @Kepler" in fallback.read_text()
    assert not out.exists()


def test_atomic_replace(capsys, tmp_path):
    out = tmp_path / "k.mlir"
    out.write_text("old")
    rc, _, _ = tpc(capsys, "compile", KEPLER, "--emit=ham", "-o", out)
    assert rc == 0 and out.read_text().startswith("builtin.module")
    assert [p.name for p in tmp_path.iterdir() if p.name != "cache"] == ["k.mlir"]


def test_output_without_suffix_prints_the_real_path(capsys, tmp_path):
    out = tmp_path / "noext"
    rc, stdout, _ = tpc(capsys, "run", KEPLER, "--steps", 100, "-o", out)
    assert rc == 0
    assert f"-> {out}.npz" in stdout
    assert (tmp_path / "noext.npz").exists() and not out.exists()


def test_device_output_is_written_in_place(capsys, tmp_path):
    rc, _, err = tpc(capsys, "compile", KEPLER, "--emit=ham", "-o", os.devnull)
    assert rc == 0, err
    assert Path(os.devnull).exists()


@pytest.mark.parametrize("command", [["compile", KEPLER, "--emit=sym"], ["run", KEPLER]])
def test_ctrl_c_while_compiling(capsys, tmp_path, monkeypatch, command):
    """A real SIGINT arrives during IR generation: one line, exit code 130."""
    def interrupted(program):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)  # the signal interrupts the sleep
        raise AssertionError("SIGINT was not delivered")

    monkeypatch.setattr(irgen, "generate", interrupted)
    rc, _, err = tpc(capsys, *command, "-o", tmp_path / "out")
    assert rc == 130 and err == "error: interrupted\n"
