"""What a run needs to know of a `ham.system`, as plain data.

Binding arrays (names, shapes, sizes, params), checking them (offsets that need a least size,
an Ewald sum's neutral charges) and reporting on a run (H's facts, the symmetries each part
was proved invariant under) read this, never the IR: it is read off the system once after the
ham passes, and a compile-cache hit loads it with the code (tpc.build_cache), so a run from
the cache imports no xDSL.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SystemInfo:
    name: str
    q: str
    p: str
    shape: tuple[int | str, ...]
    params: dict[str, float]
    inputs: dict[str, tuple[int | str, ...]]
    sizes: list[str]
    separable: bool = False
    quadratic: bool = False
    why: str = ""  # why H is not quadratic, naming the op and its source location
    box: tuple[float, ...] | None = None
    degree_text: str = ""  # H's degree ("nonpoly" when it is not a polynomial)
    # the least value of a size that the energy's index offsets need (`q[i + 2]`: N >= 3)
    min_sizes: dict[str, int] = field(default_factory=dict)
    neutral: tuple[str, ...] = ()  # inputs whose sum must be zero (the charges of an Ewald sum)
    invariant_under: dict[str, list[str]] = field(default_factory=dict)  # part -> symmetries

    @classmethod
    def declared(cls, system) -> SystemInfo:
        """The declarations of a ham.system op alone (no analysis facts needed)."""
        from tpc.dialects import ham

        q, p = system.state.names
        min_sizes = system.attributes.get("min_sizes")
        neutral = system.attributes.get("neutral")
        return cls(
            system.sym_name.data, q, p, tuple(system.state.shape.shape),
            {op.sym_name.data: op.value.value.data for op in system.decls(ham.ParamOp)},
            {op.sym_name.data: tuple(op.shape.shape) for op in system.decls(ham.InputOp)},
            [op.sym_name.data for op in system.decls(ham.SizeOp)],
            box=system.box_lengths,
            min_sizes={k: v.value.data for k, v in min_sizes.data.items()} if min_sizes else {},
            neutral=tuple(a.data for a in neutral.data) if neutral is not None else (),
        )

    @classmethod
    def of(cls, system) -> SystemInfo:
        """The declarations and the facts the ham passes attached (ham-degree, ham-symmetry)."""
        from tpc.passes.ham_degree import read_facts

        info = cls.declared(system)
        facts = read_facts(system.hamiltonian)
        info.separable, info.quadratic, info.why = facts.separable, facts.quadratic, facts.why
        info.degree_text = facts.degree_text
        info.invariant_under = {part.part_name: [a.data for a in
                                                 part.attributes["invariant_under"].data]
                                for part in system.parts if "invariant_under" in part.attributes}
        return info


def as_info(system) -> SystemInfo:
    """`system` as SystemInfo: itself, or the declarations of a ham.system op."""
    return system if isinstance(system, SystemInfo) else SystemInfo.declared(system)
