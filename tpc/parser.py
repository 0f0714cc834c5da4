"""The Lark half of the front end: the grammar's LALR parser and the tree -> AST builder.

Apart from tpc.syntax (the AST, which it builds) so that reading the AST back from a compile
cache, or using its helpers, never imports Lark: a cached build starts without parsing.
"""

from __future__ import annotations

import math
from pathlib import Path

import lark

from tpc.diagnostics import Loc, TpcError, source_lines
from tpc.syntax import (
    ArrayDecl,
    BinOp,
    BoxDecl,
    Call,
    CutoffDecl,
    EwaldDecl,
    HDecl,
    Index,
    LetDecl,
    Name,
    Neg,
    Num,
    ObserveDecl,
    Option,
    ParamDecl,
    Program,
    Reduction,
    Setting,
    StateDecl,
    System,
    Word,
    _check_characters,
    abbreviate,
)

_GRAMMAR_PATH = Path(__file__).parent / "grammar.lark"
_PARSER: lark.Lark | None = None


def _parser() -> lark.Lark:
    """The LALR parser, built on first use; lark caches its tables (keyed by the grammar)."""
    global _PARSER
    if _PARSER is None:
        _PARSER = lark.Lark(_GRAMMAR_PATH.read_text(), parser="lalr", propagate_positions=True,
                            maybe_placeholders=False, cache=True)
    return _PARSER

_TOKEN_WORDS = {
    "LBRACE": "'{'", "RBRACE": "'}'", "LPAR": "'('", "RPAR": "')'", "LSQB": "'['",
    "RSQB": "']'", "COMMA": "','", "EQUAL": "'='", "COLON": "':'", "NAME": "a name",
    "NUMBER": "a number", "INT": "an integer", "STRING": "a string", "PLUS": "'+'",
    "MINUS": "'-'", "STAR": "'*'", "SLASH": "'/'", "CIRCUMFLEX": "'^'", "COMPARE": "'<' or '!='",
    "$END": "end of file",
}


def _describe_expected(expected: set[str]) -> str:
    words = sorted({_TOKEN_WORDS.get(t, repr(t.lower()) if t.isupper() else t) for t in expected})
    if len(words) > 6:
        return ""
    return " (expected " + ", ".join(words) + ")"


class _Builder(lark.visitors.Transformer_NonRecursive):
    """Parse tree -> AST. Non-recursive: a 500-term sum is a 500-deep tree."""

    def __init__(self, path: str, source: str):
        super().__init__()
        self.path, self.source = path, source

    def loc(self, meta_or_token) -> Loc:
        return Loc(self.path, meta_or_token.line, meta_or_token.column, self.source)

    # numbers -------------------------------------------------------------
    def _number(self, tok: lark.Token) -> Num:
        text = str(tok).replace("_", "")
        # float() straight from the text: int() refuses more than 4,300 digits
        value = float(text)
        if not math.isfinite(value):
            raise TpcError(f"number {abbreviate(text)} is too large for a 64-bit float "
                           "(the largest is about 1.8e308)", self.loc(tok))
        return Num(self.loc(tok), value, text.isdigit())

    @lark.v_args(meta=True)
    def number(self, meta, children):
        return self._number(children[0])

    def pos_number(self, children):
        return self._number(children[0])

    @lark.v_args(meta=True)
    def neg_number(self, meta, children):
        n = self._number(children[0])
        return Num(self.loc(meta), -n.value, n.is_int)  # the location of the '-' sign

    # expressions ---------------------------------------------------------
    @lark.v_args(meta=True)
    def name(self, meta, children):
        return Name(self.loc(children[0]), str(children[0]))

    def _bin(op):  # noqa: N805 - a factory of transformer methods
        @lark.v_args(meta=True)
        def method(self, meta, children):
            lhs, rhs = children
            return BinOp(self.loc(meta), op, lhs, rhs)

        return method

    add, sub, mul, div, pow = _bin("+"), _bin("-"), _bin("*"), _bin("/"), _bin("^")

    @lark.v_args(meta=True)
    def neg(self, meta, children):
        return Neg(self.loc(meta), children[0])

    @lark.v_args(meta=True)
    def call(self, meta, children):
        fn, *args = children
        return Call(self.loc(fn), str(fn), [a for a in args if a is not None])

    @lark.v_args(meta=True)
    def index(self, meta, children):
        arr, *idx = children
        return Index(self.loc(arr), str(arr), idx)

    @lark.v_args(meta=True)
    def pair_sum(self, meta, children):
        i, cmp, j, body = children
        return Reduction(self.loc(meta), [str(i), str(j)], "lt" if cmp == "<" else "ne", body)

    @lark.v_args(meta=True)
    def index_sum(self, meta, children):
        i, body = children
        return Reduction(self.loc(meta), [str(i)], "index", body)

    @lark.v_args(meta=True)
    def range_sum(self, meta, children):
        i, lo, hi, body = children
        return Reduction(self.loc(meta), [str(i)], "range", body, lo, hi)

    @lark.v_args(meta=True)
    def full_sum(self, meta, children):
        return Reduction(self.loc(meta), [], "all", children[0])

    # declarations --------------------------------------------------------
    def dim_int(self, children):
        from tpc.limits import MAX_DIM

        tok = children[0]
        if len(tok) > len(str(MAX_DIM)) or int(tok) > MAX_DIM:  # int() refuses 4,300 digits
            raise TpcError(f"dimension {abbreviate(tok)} exceeds the limit of {MAX_DIM}",
                           self.loc(tok))
        return (int(tok), self.loc(tok))

    def dim_name(self, children):
        return (str(children[0]), self.loc(children[0]))

    def shape(self, children):
        return children

    def array_decl(self, children):
        name, dims = children
        return ArrayDecl(self.loc(name), str(name), [d for d, _ in dims], [dl for _, dl in dims])

    def param_item(self, children):
        name, num = children
        return ParamDecl(self.loc(name), str(name), num.value)

    def param_decl(self, children):
        return ("params", children)

    def input_decl(self, children):
        return ("inputs", children)

    @lark.v_args(meta=True)
    def state_decl(self, meta, children):
        return ("states", [StateDecl(self.loc(meta), *children)])

    def let_decl(self, children):
        name, expr = children
        return ("lets", [LetDecl(self.loc(name), str(name), expr)])

    @lark.v_args(meta=True)
    def h_decl(self, meta, children):
        return ("hamiltonians", [HDecl(self.loc(meta), children[0])])

    def observe_decl(self, children):
        name, expr = children
        return ("observes", [ObserveDecl(self.loc(name), str(name), expr)])

    @lark.v_args(meta=True)
    def box_decl(self, meta, children):
        name, *nums = children
        return ("boxes", [BoxDecl(self.loc(meta), str(name), [n.value for n in nums],
                                  [n.loc for n in nums])])

    @lark.v_args(meta=True)
    def cutoff_decl(self, meta, children):
        name, num, *options = children
        return ("cutoffs", [CutoffDecl(self.loc(meta), str(name), num.value, options)])

    @lark.v_args(meta=True)
    def ewald_decl(self, meta, children):
        return ("ewalds", [EwaldDecl(self.loc(meta), list(children))])

    def option(self, children):
        name, value = children
        if isinstance(value, Num):
            return Option(self.loc(name), str(name), value.value, value.loc)
        return Option(self.loc(name), str(name), str(value), self.loc(value))

    @lark.v_args(meta=True)
    def system(self, meta, children):
        name, *decls = children
        groups: dict[str, list] = {
            k: [] for k in ("params", "inputs", "states", "lets", "hamiltonians", "boxes",
                            "cutoffs", "ewalds", "observes")
        }
        for kind, items in decls:
            groups[kind].extend(items)
        return System(self.loc(name), str(name), **groups)

    # simulate ------------------------------------------------------------
    def string(self, children):
        return (str(children[0])[1:-1], self.loc(children[0]))

    def word(self, children):
        text = str(children[0])
        special = {"nan": math.nan, "inf": math.inf}
        value = special.get(text.lower(), Word(text))
        return (value, self.loc(children[0]))

    @lark.v_args(meta=True)
    def method(self, meta, children):
        # kept as text: tpc.passes.methods parses it, for the simulate block and --integrator
        return (Word(self.source[meta.start_pos:meta.end_pos]), self.loc(meta))

    @lark.v_args(meta=True)
    def list(self, meta, children):
        items = [c for c in children if c is not None]
        return ([self._plain(c) for c in items], self.loc(meta))

    def _plain(self, v):
        if isinstance(v, Num):
            return int(v.value) if v.is_int else v.value
        return v[0]

    def setting(self, children):
        name, value = children
        loc = value.loc if isinstance(value, Num) else value[1]
        return Setting(self.loc(name), str(name), self._plain(value), loc)

    def simulate(self, children):
        first: dict[str, Setting] = {}
        for s in children:
            if s.name in first:
                raise TpcError(f"'{s.name}' is set twice (first at {first[s.name].loc})", s.loc)
            first[s.name] = s
        return children

    def start(self, children):
        system, *rest = children
        return system, (rest[0] if rest else [])


def parse(source: str, path: str = "<input>") -> Program:
    from tpc import limits

    source = source.removeprefix("\ufeff")
    _check_characters(source, path)
    try:
        tree = _parser().parse(source)
        system, settings = _Builder(path, source).transform(tree)
    except lark.UnexpectedCharacters as e:
        loc = Loc(path, e.line, e.column, source)
        raise TpcError(f"unexpected character {source[e.pos_in_stream]!r}", loc) from None
    except lark.UnexpectedToken as e:
        if e.token.type == "$END":
            raise _end_of_file(source, path, e.expected) from None
        loc = Loc(path, e.token.line, e.token.column, source)
        raise TpcError(f"unexpected {abbreviate(str(e.token))!r}"
                       + _describe_expected(e.expected), loc) from None
    except lark.UnexpectedEOF as e:
        raise _end_of_file(source, path, set(e.expected)) from None
    except lark.exceptions.VisitError as e:
        if isinstance(e.orig_exc, TpcError):
            raise e.orig_exc from None
        raise
    program = Program(system, settings, path, source)
    limits.check(program)
    return program


def _end_of_file(source: str, path: str, expected: set[str]) -> TpcError:
    lines = source_lines(source)
    if all(not ln.strip() or ln.lstrip().startswith("#") for ln in lines):
        return TpcError("the file is empty (expected 'system NAME { ... }')",
                        Loc(path, 1, 1, source))
    if len(lines) > 1 and lines[-1] == "":
        lines.pop()
    loc = Loc(path, len(lines), len(lines[-1]) + 1, source)
    return TpcError("unexpected end of file" + _describe_expected(expected), loc)
