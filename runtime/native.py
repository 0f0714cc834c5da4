"""Compiled functions called through the module's ABI table (plain data, see tpc.passes.abi).

`Native` holds the loaded code and the table; `Bound` is one environment (state, params,
inputs, sizes as numpy arrays of the code's dtype). `Native.call(name, env, **named)` builds
the argument list from the function's roles, so callers name what they pass (dt=, out_q=,
status=...) and never spell a signature; a function added to the module is callable at once.
"""

from __future__ import annotations

import ctypes
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

DTYPES = {"f64": (np.float64, ctypes.c_double), "f32": (np.float32, ctypes.c_float)}


def fold_of(abi: dict) -> dict:
    return abi.get("fold") or {"method": "", "reason": ""}


@dataclass
class Bound:
    """One run's environment in the compiled code's dtype (q and p may be swapped per call)."""

    q: np.ndarray
    p: np.ndarray
    params: np.ndarray
    inputs: dict[str, np.ndarray]
    sizes: dict[str, int]

    def with_state(self, q: np.ndarray, p: np.ndarray) -> Bound:
        return Bound(q, p, self.params, self.inputs, self.sizes)


@dataclass
class Native:
    lib: Any  # tpc.runtime.jit.CompiledLibrary
    abi: dict
    _fns: dict = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, lib) -> Native:
        return cls(lib, json.loads(lib.meta.decode()))

    @property
    def dtype(self) -> type:
        return DTYPES[self.abi["precision"]][0]

    @property
    def real(self):
        return DTYPES[self.abi["precision"]][1]

    @property
    def fold(self) -> dict:
        """sym-fold-linear's decision: {"method": ..., "reason": ...}; method "" when the
        time loop was not folded."""
        return fold_of(self.abi)

    def has(self, name: str) -> bool:
        return name in self.abi["functions"]

    def roles(self, name: str) -> list[str]:
        if not self.has(name):
            raise KeyError(f"the compiled module has no function '{name}'")
        return self.abi["functions"][name]["args"]

    def _ctypes(self, name: str):
        if name not in self._fns:
            argtypes: list = []
            for role in self.roles(name):
                if role == "env":
                    argtypes += [ctypes.c_void_p] * (3 + len(self.abi["inputs"]))
                    argtypes += [ctypes.c_int64] * len(self.abi["sizes"])
                elif role.startswith("real:"):
                    argtypes.append(self.real)
                elif role.startswith("index:"):
                    argtypes.append(ctypes.c_int64)
                else:
                    argtypes.append(ctypes.c_void_p)
            result = self.abi["functions"][name]["result"]
            restype = {"real": self.real, "f64": ctypes.c_double}.get(result)
            self._fns[name] = self.lib.get(name, restype, argtypes)
        return self._fns[name]

    def env_args(self, env: Bound) -> list:
        args = [env.q.ctypes.data, env.p.ctypes.data, env.params.ctypes.data]
        args += [env.inputs[name].ctypes.data for name in self.abi["inputs"]]
        args += [env.sizes[s] for s in self.abi["sizes"]]
        return args

    def prepare(self, name: str, env: Bound, **named):
        """`name` bound to `env` (its env role) and `named` (the others, by name): a function
        of no arguments, for calls repeated on the same buffers (their contents may change)."""
        args: list = []
        for role in self.roles(name):
            if role == "env":
                args += self.env_args(env)
                continue
            key = role.split(":")[1]
            value = named[key]
            args.append(value.ctypes.data if isinstance(value, np.ndarray) else value)
        fn = self._ctypes(name)

        def bound():
            return fn(*args)

        bound.buffers = (env, named)  # the arrays must outlive the raw pointers in args
        return bound

    def call(self, name: str, env: Bound, **named):
        """Call `name` with `env` for its env role and `named` for the others (by name)."""
        return self.prepare(name, env, **named)()

    @property
    def carry(self) -> list[str]:
        """The names of the run state beyond q and p (ABI roles carry:NAME:n), e.g. the
        Kahan compensations; empty for a plain run."""
        return list(self.abi.get("carry") or [])

    def scratch(self, name: str, n: int, nsnap: int = 1) -> dict[str, np.ndarray]:
        """Fresh buffers for every buffer role of `name` (sized from the state size n): the
        status at STATUS_OK (-1), carried state at zero (a fresh start), the rest empty."""
        out = {}
        for role in self.roles(name):
            kind, *rest = role.split(":")
            if kind not in ("buf", "f64", "carry"):
                continue
            key, size = rest
            count = {"n": n, "3n": 3 * n, "snap_n": nsnap * n, "snap": nsnap, "1": 1}[size]
            if key == "status":
                out[key] = np.full(count, -1.0)
            elif kind == "carry":
                out[key] = np.zeros(count, self.dtype)
            else:
                out[key] = np.empty(count, np.float64 if kind == "f64" else self.dtype)
        return out
