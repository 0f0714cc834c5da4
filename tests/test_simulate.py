"""The run configuration: simulate block, init files, command-line overrides, bind_arrays."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tpc.dialects import ham

from tpc import pipeline
from tpc.diagnostics import TpcError
from tpc.simulate import RunConfig, bind_arrays, load_run_config

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.ham"))

CHAIN = """system Chain {
  param k = 1.5, m = 2
  input w[N]
  state q[N, 2], p[N, 2]
  H = sum(i: dot(p[i], p[i]) / (2 * m * w[i])) + k * sum(q * q)
}
simulate {
  integrator = yoshida4
  dt = 0.01
  steps = 2500
  q = [[1, 0], [0, 1], [1, 1]]
  p = [[0, 0], [0, 0], [0, 0]]
  w = [1, 2, 3]
}
"""


def load(tmp_path: Path, source: str, **kw) -> RunConfig:
    path = tmp_path / "sys.ham"
    path.write_text(source)
    program, module = pipeline.frontend(str(path))
    return load_run_config(program, system_of(module), **kw)


def system_of(module) -> ham.SystemOp:
    return next(op for op in module.walk() if isinstance(op, ham.SystemOp))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_examples_load(path: Path) -> None:
    program, module = pipeline.frontend(str(path))
    cfg = load_run_config(program, system_of(module))
    assert cfg.dt > 0 and cfg.steps >= 0 and cfg.save_every >= 1
    assert cfg.q0.dtype == np.float64 and cfg.q0.flags.c_contiguous
    assert cfg.q0.shape == cfg.p0.shape
    assert set(cfg.params) == {p.name for p in program.system.params}
    assert cfg.integrator is not None


def test_nbody_init_file() -> None:
    program, module = pipeline.frontend(str(ROOT / "examples" / "nbody.ham"))
    cfg = load_run_config(program, system_of(module))
    data = json.loads((ROOT / "examples" / "nbody_init.json").read_text())
    n = len(data["q"])
    assert cfg.sizes == {"N": n}
    assert cfg.q0.shape == (n, 3) and cfg.inputs["m"].shape == (n,)
    np.testing.assert_array_equal(cfg.q0, np.array(data["q"]))
    np.testing.assert_array_equal(cfg.inputs["m"], np.array(data["m"]))


def test_values_and_sizes(tmp_path: Path) -> None:
    cfg = load(tmp_path, CHAIN)
    assert cfg.integrator == "yoshida4"
    assert (cfg.dt, cfg.steps, cfg.save_every) == (0.01, 2500, 2)  # 2500 // 1000
    assert cfg.params == {"k": 1.5, "m": 2.0}
    assert cfg.sizes == {"N": 3}
    assert cfg.q0.tolist() == [[1, 0], [0, 1], [1, 1]]
    assert cfg.inputs["w"].tolist() == [1.0, 2.0, 3.0]
    assert all(a.dtype == np.float64 for a in (cfg.q0, cfg.p0, cfg.inputs["w"]))


def test_save_every_default_is_at_least_one(tmp_path: Path) -> None:
    assert load(tmp_path, CHAIN.replace("steps = 2500", "steps = 999")).save_every == 1
    assert load(tmp_path, CHAIN.replace("steps = 2500", "steps = 0")).save_every == 1
    assert load(tmp_path, CHAIN, steps=10**6).save_every == 1000


def test_integral_float_step_count(tmp_path: Path) -> None:
    assert load(tmp_path, CHAIN.replace("steps = 2500", "steps = 1e4")).steps == 10_000


def test_command_line_overrides(tmp_path: Path) -> None:
    cfg = load(tmp_path, CHAIN, steps=7, dt=0.5, save_every=3, sets=["k=4", "m = -1e-3"])
    assert (cfg.dt, cfg.steps, cfg.save_every) == (0.5, 7, 3)
    assert cfg.params == {"k": 4.0, "m": -1e-3}


def test_dt_and_steps_from_command_line_only(tmp_path: Path) -> None:
    src = CHAIN.replace("  dt = 0.01\n", "").replace("  steps = 2500\n", "")
    with pytest.raises(TpcError, match="no time step"):
        load(tmp_path, src, steps=1)
    with pytest.raises(TpcError, match="no step count"):
        load(tmp_path, src, dt=0.1)
    cfg = load(tmp_path, src, dt=0.1, steps=1)
    assert (cfg.dt, cfg.steps) == (0.1, 1)


def test_no_integrator(tmp_path: Path) -> None:
    assert load(tmp_path, CHAIN.replace("  integrator = yoshida4\n", "")).integrator is None


def test_json_init_relative_to_the_ham_file(tmp_path: Path) -> None:
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "state.json").write_text(json.dumps({"q": [[2, 2]], "p": [[1, 0]], "w": [5]}))
    src = CHAIN.split("simulate")[0] + 'simulate {\n  dt = 0.1\n  steps = 5\n  init = "state.json"\n}\n'
    cfg = load(sub, src)
    assert cfg.sizes == {"N": 1}
    assert cfg.q0.tolist() == [[2.0, 2.0]] and cfg.inputs["w"].tolist() == [5.0]


def test_init_file_and_inline_values_for_different_names(tmp_path: Path) -> None:
    (tmp_path / "state.npz").write_bytes(b"")
    np.savez(tmp_path / "state.npz", q=np.zeros((4, 2)), p=np.ones((4, 2)))
    src = CHAIN.split("simulate")[0] + (
        'simulate {\n  dt = 0.1\n  steps = 5\n  init = "state.npz"\n  w = [1, 1, 1, 1]\n}\n'
    )
    cfg = load(tmp_path, src)
    assert cfg.sizes == {"N": 4}
    assert cfg.p0.sum() == 8.0


def test_command_line_init_replaces_inline_values(tmp_path: Path, monkeypatch) -> None:
    np.savez(tmp_path / "other.npz", q=np.full((2, 2), 3.0), p=np.zeros((2, 2)), w=np.ones(2))
    monkeypatch.chdir(tmp_path)
    cfg = load(tmp_path, CHAIN, init="other.npz")
    assert cfg.sizes == {"N": 2}
    assert (cfg.q0 == 3.0).all()


def test_command_line_init_partial(tmp_path: Path, monkeypatch) -> None:
    # the file gives q only; p and w still come from the simulate block
    (tmp_path / "q.json").write_text(json.dumps({"q": [[9, 9], [9, 9], [9, 9]]}))
    monkeypatch.chdir(tmp_path)
    cfg = load(tmp_path, CHAIN, init="q.json")
    assert (cfg.q0 == 9).all() and cfg.inputs["w"].tolist() == [1.0, 2.0, 3.0]


def test_command_line_init_shape_error_points_at_inline_value(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "q.json").write_text(json.dumps({"q": [[9, 9], [9, 9]]}))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TpcError) as info:
        load(tmp_path, CHAIN, init="q.json")
    assert info.value.message == "N is 2 from 'q' but 'p' has 3"
    # p's value is in the .ham file, so that is where the error points
    assert info.value.loc is not None and (info.value.loc.line, info.value.loc.col) == (12, 7)


# ------------------------------------------------------------------------ bind_arrays


@pytest.fixture(scope="module")
def chain_system() -> ham.SystemOp:
    _, module = pipeline.frontend(CHAIN, "chain.ham")
    return system_of(module)


def test_bind_arrays_converts_and_copies(chain_system) -> None:
    q = np.arange(8, dtype=np.int32).reshape(4, 2)
    p = np.asfortranarray(np.ones((4, 2)))
    w = [1, 2, 3, 4]
    q2, p2, ins, sizes = bind_arrays(chain_system, q, p, {"w": w})
    assert sizes == {"N": 4}
    for a in (q2, p2, ins["w"]):
        assert a.dtype == np.float64 and a.flags.c_contiguous
    q2[0, 0] = 100.0
    assert q[0, 0] == 0  # a copy, not a view
    p3 = np.ones((4, 2))
    _, p4, _, _ = bind_arrays(chain_system, q, p3, {"w": w})
    p4[0, 0] = 5.0
    assert p3[0, 0] == 1.0


@pytest.mark.parametrize(
    "q,p,inputs,msg",
    [
        (np.zeros((3, 3)), np.zeros((3, 3)), {"w": np.ones(3)}, "'q' needs shape [N, 2], got [3, 3]"),
        (np.zeros(6), np.zeros((3, 2)), {"w": np.ones(3)}, "'q' needs shape [N, 2], got [6]"),
        (np.zeros((3, 2)), np.zeros((4, 2)), {"w": np.ones(3)}, "N is 3 from 'q' but 'p' has 4"),
        (np.zeros((3, 2)), np.zeros((3, 2)), {"w": np.ones(2)}, "N is 3 from 'q' but 'w' has 2"),
        (np.zeros((0, 2)), np.zeros((0, 2)), {"w": np.ones(0)}, "N must be at least 1, but 'q' has 0"),
        (np.zeros((3, 2)), np.zeros((3, 2)), {}, "no initial value for input 'w': give "
         "'w = [...]' in the simulate block or an init file"),
        (np.zeros((3, 2)), np.zeros((3, 2)), {"w": np.ones(3), "v": np.ones(3)},
         "'v' is not an input of the system (inputs: w)"),
        (np.zeros((3, 2)), np.full((3, 2), np.inf), {"w": np.ones(3)},
         "initial value of 'p' is not finite at index (0, 0)"),
        (np.zeros((3, 2)), np.zeros((3, 2)), {"w": [1, np.nan, 1]},
         "initial value of 'w' is not finite at index 1"),
        (None, np.zeros((3, 2)), {"w": np.ones(3)}, "no initial value for state array 'q': "
         "give 'q = [...]' in the simulate block or an init file"),
        ([[1, 2], [3]], np.zeros((2, 2)), {"w": np.ones(2)},
         "initial value of 'q' is not a rectangular array of numbers"),
    ],
    ids=["fixed-dim", "rank", "p-size", "input-size", "empty", "missing-input", "extra-input",
         "inf", "nan-input", "missing-q", "ragged"],
)
def test_bind_arrays_errors(chain_system, q, p, inputs, msg) -> None:
    with pytest.raises(TpcError) as info:
        bind_arrays(chain_system, q, p, inputs)
    assert info.value.message == msg
    assert info.value.loc is None


def test_bind_arrays_fixed_shape() -> None:
    _, module = pipeline.frontend(
        "system K {\n  state q[3], p[3]\n  H = dot(p, p) / 2 - 1 / norm(q)\n}\n", "k.ham"
    )
    system = system_of(module)
    q, p, ins, sizes = bind_arrays(system, [1, 0, 0], (0.0, 1.0, 0.0), {})
    assert sizes == {} and ins == {}
    assert q.tolist() == [1.0, 0.0, 0.0] and p.tolist() == [0.0, 1.0, 0.0]
    with pytest.raises(TpcError, match=r"'p' needs shape \[3\], got \[2\]"):
        bind_arrays(system, [1, 0, 0], [0, 1], {})
