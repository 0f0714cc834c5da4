"""The sizes the front end accepts, checked on the AST before any recursive stage sees it.

Past these limits the later stages would overflow the Python stack, allocate without bound or
take minutes, so each one is refused with an error that names the limit. The walks here are
iterative, so they themselves have no depth limit.
"""

from __future__ import annotations

import sys

from tpc.diagnostics import Loc, TpcError
from tpc.syntax import BinOp, Index, Name, Neg, Node, Num, Program, Reduction

MAX_DEPTH = 5000  # expression nesting, counted through the lets an expression uses
MAX_SUM_NESTING = 16  # derivatives of nested sums cost about the cube of the depth
MAX_RANK = 8
MAX_DIM = 2**31 - 1  # a fixed dimension, the product of an array's fixed dimensions, an index
MAX_VECTOR = 128  # a fixed last dimension is one SIMD vector: compile time grows fast with it
MAX_LIST_NESTING = 32  # simulate lists; the arrays they give have at most MAX_RANK dimensions
MAX_EXPONENT = 2**31 - 1  # integer exponents become repeated multiplication
MAX_STEPS = 10**15  # steps and save_every: far more than any run, well inside an i64
# The recursion limit MAX_DEPTH needs: the recursive stages were measured at 5 frames a level at
# most (a chain of lets); 40 leaves room for stages that change.
RECURSION_LIMIT = 40 * MAX_DEPTH


def check(program: Program) -> None:
    """Refuse a program past any limit, at the construct that crosses it."""
    # Only ever raised, to what the accepted depth needs. Since CPython 3.11 Python-to-Python
    # calls use no C stack, so the higher limit cannot overflow it.
    sys.setrecursionlimit(max(sys.getrecursionlimit(), RECURSION_LIMIT))
    system = program.system
    for arr in [*system.inputs, *(a for st in system.states for a in (st.q, st.p))]:
        _check_shape(arr.name, arr.shape, arr.dim_locs)
    for setting in program.settings:
        _check_list_nesting(setting.value, setting.value_loc)
    lets = {d.name: d.expr for d in system.lets}
    depths: dict[str, tuple[int, int]] = {}
    roots = [*(d.expr for d in system.lets), *(h.expr for h in system.hamiltonians)]
    for root in roots:
        _measure(root, lets, depths)


def _check_shape(name: str, shape: list, locs: list[Loc]) -> None:
    if len(shape) > MAX_RANK:
        raise TpcError(f"'{name}' has {len(shape)} dimensions, more than the limit of {MAX_RANK}",
                       locs[MAX_RANK])
    size = 1
    for d, dloc in zip(shape, locs):
        if isinstance(d, int):
            size *= d
            if size > MAX_DIM:
                raise TpcError(
                    f"'{name}' has more than {MAX_DIM} elements in its fixed dimensions", dloc
                )
    if shape and isinstance(shape[-1], int) and shape[-1] > MAX_VECTOR:
        raise TpcError(
            f"the last dimension of '{name}' is {shape[-1]}, more than the limit of {MAX_VECTOR} "
            f"for a fixed last dimension (it is carried as a vector); use a size symbol "
            f"({name}[N]) for long arrays",
            locs[-1],
        )


def _check_list_nesting(value: object, loc: Loc) -> None:
    level = [value]
    for _ in range(MAX_LIST_NESTING + 1):
        level = [item for v in level if isinstance(v, list) for item in v]
        if not level:
            return
    raise TpcError(f"lists nested deeper than {MAX_LIST_NESTING} levels", loc)


def _children(node: Node) -> list[Node]:
    out: list[Node] = []
    for child in vars(node).values():
        if isinstance(child, Node):
            out.append(child)
        elif isinstance(child, list):
            out.extend(c for c in child if isinstance(c, Node))
    return out


def _measure(root: Node, lets: dict[str, Node], depths: dict[str, tuple[int, int]]) -> None:
    """Post-order over `root`, entering each let it names once (cycles are irgen's to report):
    fills `depths[let]` with (expression depth, sum nesting) and checks the limits."""
    done: dict[int, tuple[int, int]] = {}
    stack: list[tuple[Node, bool]] = [(root, False)]
    entered: set[str] = set()
    while stack:
        node, expanded = stack.pop()
        let = node.id if isinstance(node, Name) and node.id in lets else None
        if not expanded:
            _check_literals(node)
            stack.append((node, True))
            if let is not None and let not in depths and let not in entered:
                entered.add(let)
                stack.append((lets[let], False))
            stack.extend((c, False) for c in _children(node))
            continue
        depth, sums = 0, 0
        for c in _children(node):
            cd, cs = done[id(c)]
            depth, sums = max(depth, cd), max(sums, cs)
        if let is not None:
            if let not in depths and let in entered:
                depths[let] = done.get(id(lets[let]), (0, 0))
            depth, sums = (max(a, b) for a, b in zip((depth, sums), depths.get(let, (0, 0))))
        depth += 1
        sums += isinstance(node, Reduction)
        if depth > MAX_DEPTH:
            raise TpcError(f"expression nested deeper than {MAX_DEPTH} levels "
                           "(counting the lets it uses)", node.loc)
        if sums > MAX_SUM_NESTING:
            raise TpcError(f"sums nested deeper than {MAX_SUM_NESTING} levels", node.loc)
        done[id(node)] = (depth, sums)


def _check_literals(node: Node) -> None:
    """Integer literals that become machine integers: indices, offsets, bounds, exponents."""
    if isinstance(node, Index):
        for e in node.indices:
            _check_index_literals(e, f"index into '{node.array}'")
    elif isinstance(node, Reduction):
        for e in (node.lower, node.upper):
            if e is not None:
                _check_index_literals(e, "range bound")
    elif isinstance(node, BinOp) and node.op == "^":
        exp = node.rhs
        while isinstance(exp, Neg):
            exp = exp.operand
        if isinstance(exp, Num) and exp.is_int and exp.value > MAX_EXPONENT:
            raise TpcError(
                f"integer exponent {exp.value:.0f} exceeds the limit of {MAX_EXPONENT}", exp.loc
            )


def _check_index_literals(e: Node, what: str) -> None:
    stack = [e]
    while stack:
        n = stack.pop()
        if isinstance(n, Num) and n.is_int and n.value > MAX_DIM:
            raise TpcError(f"{what}: {n.value:.0f} exceeds the limit of {MAX_DIM}", n.loc)
        stack.extend(_children(n))
