"""The ABI as data: the functions a lowered module exports and what each argument is.

sym-lower-loops (and sym-gpu-kernels, for its kernels) record it on the module as the
attribute `tpc.abi`; the runtime reads it back as plain data (`read_abi`) and binds arguments
by role, so a new function (a monitor, a tangent map) is a new entry here, not a new calling
convention in every caller. It travels with the cached object code as JSON (`read_abi` gives the plain data).

Roles:
  env            the environment: q, p, params, then each input, then each size
  real:NAME      a scalar of the precision's float type (dt)
  index:NAME     an integer (nsnap, stride, step0, count, ...)
  buf:NAME:ROWS  a buffer of the precision's float type, ROWS state-sized rows (out_q, g, work)
  f64:NAME:SIZE  a float64 buffer of SIZE elements (1: status; snap: out_H, the energies,
                 float64 in every precision; parts: one energy per part of H, in the
                 table's `parts` order; monitors: one value per entry of the table's
                 `monitors` list, the system's ham.monitor regions)
  buf:maps:maps  the augmented (2n+1)^2 matrices of the scheme's exact linear flows, in the
                 order of the table's `linear` list ({parts, c, grad}); the run-time fills it
                 for each dt from the flows' gradient functions (`linear_<k>_<field>`)
  buf:boris:3n   scratch of the Boris step (momentum probes, e B)
  buf:avf:n      scratch of an average-vector-field stage (the accumulated dH/dq)
  buf:bodies:kepler  (m_i, mu_i) of each body (row of 3) for each Kepler flow, in the order of
                 the table's `kepler` list; the run-time reads them from `kepler_<k>_<field>`
  buf:dpi:theta  run_tangent's tangent of the conjugate momenta of the params (in the table's
                 `params` order) and then of every input (flat, in `inputs` order)
  carry:NAME:n   run state beyond q and p (sym-kahan's compensations kahan_q, kahan_p): a
                 state-sized buffer of the precision's float type that the function reads and
                 updates; zero at a fresh start, then handed from each call to the next
                 (chunks, restarts), returned with the trajectory and written to the output

Function results: `f64` (energy: evaluated in float64 in every precision).
"""

from __future__ import annotations

from collections.abc import Sequence

from tpc.dialects import ham, sym
from tpc.passes.sym_shadow import read_shadow
from xdsl.dialects.builtin import (
    ArrayAttr,
    DictionaryAttr,
    FloatAttr,
    IntAttr,
    StringAttr,
    UnitAttr,
    f64,
)
from xdsl.ir import Attribute

ABI_ATTR = "tpc.abi"

ENV = "env"
RESULTS = {"energy": "f64"}
SIGNATURES: dict[str, list[str]] = {
    "energy": [ENV],
    "energy_parts": [ENV, "f64:out:parts"],
    "monitors": [ENV, "f64:out:monitors"],
    "run": [ENV, "real:dt", "index:nsnap", "index:stride", "index:step0", "buf:out_q:snap_n",
            "buf:out_p:snap_n", "f64:out_H:snap", "buf:g:n", "buf:work:3n", "f64:status:1"],
}

# run_tangent: the tangent (dq, dp) in place, its snapshots, the tangent-gradient scratch, and
# the tangent of the params' and inputs' conjugate momenta (params, then each input flat),
# accumulated only when `adjoint` is not 0
TANGENT_ROLES = ["buf:tq:n", "buf:tp:n", "buf:out_tq:snap_n", "buf:out_tp:snap_n", "buf:tg:4n",
                 "buf:dpi:theta", "index:adjoint"]


def signature(name: str, linear: bool = False, kepler: bool = False,
              boris: bool = False, carry: Sequence[str] = (), avf: bool = False) -> list[str]:
    if name.startswith(("grad_", "linear_", "kepler_")):
        return [ENV, "buf:out:n"]
    if name.startswith("taylor_"):
        return [ENV, "f64:dir:n", "f64:out:5"]
    if name.startswith("hvp_"):
        return [ENV, "f64:dir:n", "f64:out:n"]
    if name.startswith("d2_"):
        return [ENV, "f64:dir:n"]
    if name in ("run", "run_tangent"):
        roles = [*SIGNATURES["run"], *(["buf:maps:maps"] if linear else []),
                 *(["buf:bodies:kepler"] if kepler else []),
                 *(["buf:boris:3n"] if boris else []), *(["buf:avf:n"] if avf else []),
                 *[f"carry:{c}:n" for c in carry]]
        return roles + (TANGENT_ROLES if name == "run_tangent" else [])
    return SIGNATURES[name]


def flow_table(scheme, fields: Sequence[str], op_type, prefix: str) -> list[dict]:
    flows = [op for op in scheme.walk() if isinstance(op, op_type)]
    return [{"parts": op.part_names, "c": op.c,
             "grad": {f: f"{prefix}_{k}_{f}" for f in fields}} for k, op in enumerate(flows)]


def abi_table(system: ham.SystemOp, functions: Sequence[str], precision: str,
              fold: dict | None, scheme, carry: Sequence[str] = ()) -> StringAttr:
    """The `tpc.abi` attribute for the exported functions of a lowered module."""
    q, p = system.state.names
    linear = flow_table(scheme, (q, p), sym.LinearOp, "linear")
    kepler = flow_table(scheme, (q, p), sym.KeplerOp, "kepler")
    exported = [f for f in functions if f in SIGNATURES or f == "run_tangent"
                or f in (f"grad_{q}", f"grad_{p}")
                or f.startswith(("linear_", "kepler_", "d2_"))]
    # the shadow Hamiltonian's dt^4 term: derivatives along a direction, Hessian-vector products
    exported += [f for f in functions if f.startswith(("taylor_", "hvp_"))]
    table = {
        "system": system.sym_name.data,
        "precision": precision,
        "state": [q, p],
        "shape": list(system.state.shape.shape),
        "parts": system.hamiltonian.part_names,
        "monitors": monitor_table(system),
        "params": {op.sym_name.data: op.value.value.data for op in system.decls(ham.ParamOp)},
        "inputs": {op.sym_name.data: list(op.shape.shape) for op in system.decls(ham.InputOp)},
        "sizes": [op.sym_name.data for op in system.decls(ham.SizeOp)],
        "functions": {f: {"args": signature(f, bool(linear), bool(kepler), any(
                              isinstance(op, sym.BorisOp) for op in scheme.walk()), carry,
                              any(isinstance(op, sym.MidpointOp) and op.n_nodes > 1
                                  for op in scheme.walk())),
                          "result": "f64" if f.startswith("d2_") else RESULTS.get(f)}
                      for f in exported},
        "shadow": read_shadow(scheme),
        "linear": linear,
        "kepler": kepler,
        "carry": list(carry),
        "fold": fold,
        "scheme": {
            # the parts each stage flows together (a charge is conserved to round-off when
            # every such flow is of an invariant Hamiltonian)
            "flows": [list(op.part_names) for op in scheme.walk()
                      if hasattr(op, "part_names") and op is not scheme],
            "integrator": _attr(scheme, "integrator"),
            "project": _attr(scheme, "project"),
            "force_evals": _attr(scheme, "force_evals"),
            "reversible": "reversible" in scheme.attributes,
            "coefficients": [a.data for a in scheme.attributes["coefficients"].data]
            if "coefficients" in scheme.attributes else [],
        },
    }
    return to_attr(table)


def monitor_table(system: ham.SystemOp) -> list[dict]:
    """The quantities `monitors` computes, in its output order: name, what it is (momentum,
    angular_momentum, observable) and the symmetry that conserves it ("" for an observable)."""
    out = []
    for m in system.monitors:
        sym_attr = m.attributes.get("symmetry")
        out.append({"name": m.monitor_name, "quantity": m.quantity,
                    "symmetry": sym_attr.data if isinstance(sym_attr, StringAttr) else ""})
    return out


def to_attr(value) -> Attribute:
    """Plain data (dict, list, str, int, float, None) as a builtin attribute."""
    if isinstance(value, dict):
        return DictionaryAttr({k: to_attr(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return ArrayAttr([to_attr(v) for v in value])
    if isinstance(value, str):
        return StringAttr(value)
    if isinstance(value, bool) or value is None:
        return UnitAttr() if value is None else IntAttr(int(value))
    if isinstance(value, int):
        return IntAttr(value)
    return FloatAttr(float(value), f64)


def from_attr(attr: Attribute):
    """The inverse of to_attr."""
    if isinstance(attr, DictionaryAttr):
        return {k: from_attr(v) for k, v in attr.data.items()}
    if isinstance(attr, ArrayAttr):
        return [from_attr(v) for v in attr.data]
    if isinstance(attr, StringAttr | IntAttr):
        return attr.data
    if isinstance(attr, FloatAttr):
        return attr.value.data
    return None


def _attr(op, name: str):
    a = op.attributes.get(name)
    if a is None:
        return None
    return a.data if isinstance(a, StringAttr) else a.value.data


def read_abi(module) -> dict:
    """The ABI table of a lowered module, as plain data."""
    attr = module.attributes.get(ABI_ATTR)
    if attr is None:
        raise KeyError("module has no tpc.abi (run sym-lower-loops)")
    return from_attr(attr)
