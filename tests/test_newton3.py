"""The gather form of pair forces (--no-newton3) against the symmetric scatter form."""

import json
from pathlib import Path

import numpy as np

import tpc

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_gather_and_scatter_forms_agree():
    data = json.loads((EXAMPLES / "nbody_init.json").read_text())
    q, p, m = (np.array(data[k]) for k in ("q", "p", "m"))
    rng = np.random.default_rng(5)
    q = q + 0.1 * rng.normal(size=q.shape)
    scatter = tpc.compile(EXAMPLES / "nbody.ham")
    gather = tpc.compile(EXAMPLES / "nbody.ham", newton3=False)
    gs, gg = scatter.gradient(q, p, m=m), gather.gradient(q, p, m=m)
    for a, b in zip(gs, gg):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-15 * np.abs(a).max())
    ts = scatter.run(q, p, dt=0.01, steps=200, save_every=50, m=m)
    tg = gather.run(q, p, dt=0.01, steps=200, save_every=50, m=m)
    np.testing.assert_allclose(tg.q, ts.q, rtol=1e-12, atol=1e-13)


def test_no_newton3_changes_the_generated_gradient():
    import subprocess
    import sys

    def loops(*flags):
        cmd = [sys.executable, "-m", "tpc.cli", "compile", str(EXAMPLES / "nbody.ham"),
               "--emit=loops", "-o", "-", *flags]
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout

    def grad_q(text):
        start = text.index("@grad_V_q")
        return text[start:text.index("func.func", start)]

    # Scatter: the pair loop stores to both particles; gather: one store per row, after the loop.
    assert grad_q(loops()).count("memref.store") > grad_q(loops("--no-newton3")).count(
        "memref.store")
