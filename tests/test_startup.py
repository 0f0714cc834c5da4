"""A compile-cache hit: no compiler imported, the same results and errors as a miss."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tpc import build_cache

ROOT = Path(__file__).resolve().parent.parent
KEPLER = ROOT / "examples" / "kepler.ham"
COMPILER_MODULES = ("xdsl", "lark", "llvmlite.binding")

pytestmark = pytest.mark.skipif(not build_cache.enabled(),
                                reason="no linker for shared libraries here")


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    path = tmp_path / "cache"
    monkeypatch.setenv("TPC_CACHE_DIR", str(path))
    return path


def python(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=600)


# Runs the CLI in this process and prints, as JSON, its exit status and the compiler modules
# it imported.
CLI = """
import json, sys
from tpc.cli import main
rc = main(sys.argv[1:])
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("xdsl", "lark")
                or m.startswith("llvmlite.binding"))
print(json.dumps({"rc": rc, "loaded": loaded}))
"""


def cli(*args: str) -> tuple[dict, str]:
    done = python(CLI, *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1]), done.stderr


def test_a_hit_imports_no_compiler(tmp_path, cache_dir) -> None:
    out = str(tmp_path / "k.npz")
    first, _ = cli("run", str(KEPLER), "-o", out, "--quiet")
    assert first["rc"] == 0 and "xdsl" in first["loaded"]  # the miss compiled
    second, _ = cli("run", str(KEPLER), "-o", out, "--quiet")
    assert second == {"rc": 0, "loaded": []}
    done = python("import sys, tpc; sys.exit(any(m.startswith(('xdsl', 'lark', 'numpy', "
                  "'llvmlite')) for m in sys.modules))")
    assert done.returncode == 0, "import tpc loads no compiler and no numpy"


def test_a_resumed_run_uses_the_build_of_its_run(tmp_path, cache_dir) -> None:
    """A resume asks for the options the run resolved, explicitly: the same build."""
    out = str(tmp_path / "k.npz")
    assert cli("run", str(KEPLER), "-o", out, "--quiet", "--steps", "3000")[0]["rc"] == 0
    res, _ = cli("run", str(KEPLER), "--resume", out, "--steps", "2000", "--quiet")
    assert res == {"rc": 0, "loaded": []}


def test_api_hit_imports_no_compiler(cache_dir) -> None:
    code = f"""
import sys, tpc
sim = tpc.compile({str(KEPLER)!r})
traj = sim.run([0.4, 0, 0], [0, 2, 0], dt=0.01, steps=100)
sim.gradient([0.4, 0, 0], [0, 2, 0])
sim.energy([0.4, 0, 0], [0, 2, 0])
print(sim.cache_hit, [m for m in sys.modules if m.startswith({COMPILER_MODULES!r})])
"""
    assert python(code).stdout.split()[0] == "False"
    assert python(code).stdout.strip() == "True []"


def test_hit_and_miss_give_the_same_run(tmp_path, cache_dir) -> None:
    """Bit for bit, for a stepped run and for folded ones (the map built at run time, for f32
    from the f64 build of the same source)."""
    for example, flags in (("kepler.ham", []), ("harmonic_chain.ham", []),
                           ("harmonic_chain.ham", ["--precision", "f32"]),  # its f64 twin too
                           ("kepler.ham", ["--precision", "f32", "--kahan"])):
        outs = []
        for run in ("miss", "hit"):
            out = tmp_path / f"{run}.npz"
            res, _ = cli("run", str(ROOT / "examples" / example), "-o", str(out), "--quiet",
                         *flags)
            assert res["rc"] == 0
            assert bool(res["loaded"]) == (run == "miss")
            outs.append(np.load(out))
        miss, hit = outs
        assert miss.files == hit.files
        for key in miss.files:
            assert np.array_equal(miss[key], hit[key]), (example, key)
        shutil.rmtree(cache_dir)


def test_the_same_errors_from_a_hit(tmp_path, cache_dir) -> None:
    """Errors in the run's input are reported as on a miss, at the same place, with the caret;
    one source at another path names that path."""
    src = tmp_path / "a.ham"
    src.write_text(KEPLER.read_text().replace("q = [0.4, 0.0, 0.0]", 'init = "state.json"'))
    state = tmp_path / "state.json"
    state.write_text('{"q": [0.4, 0.0, 0.0]}')
    out = str(tmp_path / "o.npz")
    assert cli("run", str(src), "-o", out, "--quiet")[0]["loaded"]  # the build is stored
    state.write_text('{"q": [0.4, 0.0]}')

    def error(path: Path, cache: Path) -> tuple[str, list[str]]:
        done = subprocess.run([sys.executable, "-c", CLI, "run", str(path), "-o", out],
                              capture_output=True, text=True, cwd=ROOT, timeout=600,
                              env=os.environ | {"TPC_CACHE_DIR": str(cache)})
        result = json.loads(done.stdout.splitlines()[-1])
        assert result["rc"] == 1
        return done.stderr, result["loaded"]

    hit, loaded = error(src, cache_dir)
    assert loaded == []
    miss, loaded = error(src, tmp_path / "empty")
    assert loaded and hit == miss
    assert "'q' needs shape [3], got [2]" in hit and hit.rstrip().endswith("^")
    other = tmp_path / "b.ham"
    shutil.copy(src, other)
    moved, loaded = error(other, cache_dir)
    assert loaded and all(m.startswith("lark") for m in loaded)  # parsed again, not compiled
    assert moved == hit.replace(str(src), str(other)) and str(other) in moved
    done = python(CLI, "run", str(src), "--set", "nu=1")
    assert "the system has no param 'nu' (params: mu)" in done.stderr


def test_a_torn_record_is_a_miss(cache_dir) -> None:
    import tpc

    assert tpc.compile(str(KEPLER)).native is not None
    again = tpc.compile(str(KEPLER))
    assert again.native is not None
    assert again.cache_hit
    for record in (cache_dir / "builds").glob("*.build"):
        record.write_bytes(record.read_bytes()[:-10])
    torn = tpc.compile(str(KEPLER))
    assert torn.native is not None
    assert not torn.cache_hit
    healed = tpc.compile(str(KEPLER))
    assert healed.native is not None
    assert healed.cache_hit


def test_without_a_linker_the_object_cache_serves(tmp_path, cache_dir, monkeypatch) -> None:
    import tpc

    monkeypatch.setattr(build_cache, "enabled", lambda: False)
    first = tpc.compile(str(KEPLER))
    a = first.run([0.4, 0, 0], [0, 2, 0], dt=0.01, steps=50)
    assert not first.cache_hit and not (cache_dir / "builds").exists()
    second = tpc.compile(str(KEPLER))
    b = second.run([0.4, 0, 0], [0, 2, 0], dt=0.01, steps=50)
    assert second.cache_hit and np.array_equal(a.q, b.q)
