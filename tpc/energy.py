"""`tpc energy FILE.ham`: H and each of its parts at the initial state, without stepping (a
crystal's lattice energy, a configuration's check before a long run)."""

from __future__ import annotations

import numpy as np

from tpc import api, compiler
from tpc.simulate import load_run_config


def main(args) -> int:
    options = compiler.options_from_args(args)
    sim = api.compile(args.file, integrator=options.integrator, fold=False,
                      precision=options.precision)
    cfg = load_run_config(sim.program, sim.info, steps=0, dt=1.0, save_every=1,
                          sets=args.set, init=args.init)
    parts = sim.part_energies(cfg.q0, cfg.p0, cfg.params, **cfg.inputs)
    total = sim.energy(cfg.q0, cfg.p0, cfg.params, **cfg.inputs)
    if args.remarks:
        for line in compiler.ham_remarks(sim.module):
            print(line)
    print(f"H = {total:.17g}")
    for name, value in parts.items():
        print(f"  {name} = {value:.17g}")
    return 0 if np.isfinite(total) else 1
