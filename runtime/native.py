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

    def scratch(self, name: str, n: int, nsnap: int = 1, env: Bound | None = None,
                dt: float | None = None) -> dict[str, np.ndarray]:
        """Fresh buffers for every buffer role of `name` (sized from the state size n): the
        status at STATUS_OK (-1), carried state at zero (a fresh start), the rest empty. With
        `env` and `dt`, buffers that depend on them (the linear flows' `maps`) are filled."""
        out = {}
        width = (2 * n + 1) ** 2
        for role in self.roles(name):
            kind, *rest = role.split(":")
            if kind not in ("buf", "f64", "carry"):
                continue
            key, size = rest
            count = {"n": n, "3n": 3 * n, "4n": 4 * n, "snap_n": nsnap * n, "snap": nsnap, "1": 1,
                     "maps": len(self.abi.get("linear") or ()) * width,
                     "kepler": len(self.abi.get("kepler") or ()) * 2 * (n // 3),
                     "parts": len(self.abi.get("parts") or ()),
                     "monitors": len(self.abi.get("monitors") or ()),
                     "theta": len(self.abi["params"]) + (
                         sum(v.size for v in env.inputs.values()) if env is not None else 0),
                     }[size]
            if key == "status":
                out[key] = np.full(count, -1.0)
            elif kind == "carry":
                out[key] = np.zeros(count, self.dtype)
            else:
                out[key] = np.empty(count, np.float64 if kind == "f64" else self.dtype)
        if "maps" in out or "bodies" in out:
            if env is None or dt is None:
                raise ValueError(f"'{name}' runs exact flows: scratch needs env and dt")
        if "maps" in out:
            out["maps"][:] = self.linear_maps(env, dt).ravel()
        if "bodies" in out:
            out["bodies"][:] = self.kepler_bodies(env).ravel()
        return out

    def _flow_grad(self, flow: dict, env: Bound, q: np.ndarray, p: np.ndarray):
        """d(parts of the flow)/dq, d/dp at the state (q, p), flat, in float64."""
        n = env.q.size
        q_name, p_name = self.abi["state"]
        at = env.with_state(q.astype(self.dtype).reshape(env.q.shape),
                            p.astype(self.dtype).reshape(env.p.shape))
        gq, gp = np.empty(n, self.dtype), np.empty(n, self.dtype)
        self.call(flow["grad"][q_name], at, out=gq)
        self.call(flow["grad"][p_name], at, out=gp)
        return gq.astype(np.float64), gp.astype(np.float64)

    def kepler_bodies(self, env: Bound) -> np.ndarray:
        """(m_i, mu_i = k_i / m_i) of each body of each Kepler flow. ham-kepler proved the
        parts are sum |p_i|^2/(2 m_i) - k_i/|q_i|, so the gradients at unit rows give 1/m_i and
        k_i exactly; a generic state checks them, and the masses and strengths must be > 0."""
        from tpc.diagnostics import TpcError

        n = env.q.size
        rows = n // 3
        unit = np.tile([1.0, 0.0, 0.0], rows)
        out = []
        for flow in self.abi.get("kepler") or ():
            gq, gp = self._flow_grad(flow, env, unit, unit)
            inv_m, k = gp[0::3], gq[0::3]
            with np.errstate(divide="ignore", invalid="ignore"):
                m, mu = 1.0 / inv_m, k * inv_m
            if not (np.all(np.isfinite(m)) and np.all(m > 0) and np.all(np.isfinite(mu))
                    and np.all(mu > 0)):
                raise TpcError(f"the Kepler flow of {', '.join(flow['parts'])} needs masses and "
                               "strengths > 0 for every body (an attracting centre)")
            rng = np.random.default_rng(1)
            q = rng.uniform(0.5, 1.5, n) * rng.choice([-1.0, 1.0], n)
            p = rng.uniform(0.5, 1.5, n)
            gq, gp = self._flow_grad(flow, env, q, p)
            r3 = np.repeat(np.linalg.norm(q.reshape(rows, 3), axis=1) ** 3, 3)
            want_q, want_p = np.repeat(k, 3) * q / r3, p / np.repeat(m, 3)
            tol = 1e-12 if self.dtype == np.float64 else 1e-5
            if not (np.allclose(gq, want_q, rtol=tol, atol=0)
                    and np.allclose(gp, want_p, rtol=tol, atol=0)):
                raise TpcError(f"the parts {', '.join(flow['parts'])} are not a sum of Kepler "
                               "problems at run time (their gradients disagree with "
                               "|p_i|^2/(2 m_i) - k_i/|q_i|)")
            out.append(np.stack([m, mu], axis=1))
        return np.array(out)

    def linear_maps(self, env: Bound, dt: float) -> np.ndarray:
        """The augmented matrices exp(c dt [[A, a], [0, 0]]) of the scheme's exact linear
        flows, where A z + a = J grad(parts)(z): the gradient of quadratic parts is affine,
        so n + 1 gradient calls give it exactly; the exponential is taken in float64."""
        from tpc.runtime.fold import expm

        n = env.q.size
        out = []
        for flow in self.abi.get("linear") or ():
            zero = np.zeros(n)
            gq0, gp0 = self._flow_grad(flow, env, zero, zero)
            big = np.zeros((2 * n + 1, 2 * n + 1))
            for k in range(2 * n):
                e = np.zeros(2 * n)
                e[k] = 1.0
                gq, gp = self._flow_grad(flow, env, e[:n], e[n:])
                # J grad: dq/dt = dH/dp, dp/dt = -dH/dq
                big[:n, k], big[n:2 * n, k] = gp - gp0, gq0 - gq
            big[:n, -1], big[n:2 * n, -1] = gp0, -gq0
            d = balance(big)
            m = expm(flow["c"] * dt * (big * d[None, :] / d[:, None]))
            out.append(m * d[:, None] / d[None, :])
        return np.array(out)


def balance(a: np.ndarray, sweeps: int = 32) -> np.ndarray:
    """Diagonal d (powers of two) with D^-1 A D balanced (Parlett and Reinsch 1969): a stiff
    trap's [[0, 1], [-k, 0]] has columns 1e6 apart, and scaling and squaring loses that ratio
    times eps per squaring; balanced, it is a rotation and exp is accurate to round-off. numpy
    has no gebal and scipy is not a run-time dependency, hence these few lines."""
    n = len(a)
    d = np.ones(n)
    off = np.abs(a) * (1.0 - np.eye(n))
    for _ in range(sweeps):
        done = True
        for i in range(n):
            c = float(np.sum(off[:, i] * d[i] / d))  # column i of D^-1 A D
            r = float(np.sum(off[i, :] * d / d[i]))  # row i
            if c == 0.0 or r == 0.0:
                continue
            f = 2.0 ** round(0.5 * np.log2(r / c))
            if f != 1.0:
                d[i] *= f
                done = False
        if done:
            break
    return d
