"""A small truncated free associative / free Lie algebra engine (Baker-Campbell-Hausdorff).

Why this exists: tpc derives the order conditions of its splitting and composition methods
itself instead of pasting coefficient tables, and nothing in numpy or scipy manipulates
non-commuting series. The engine is deliberately small and exact:

* `Alphabet`: generators with positive integer weights (X1, X3, X5, ... of weights 1, 3, 5, ...
  for the odd terms of a symmetric 2nd-order base method; A, B of weight 1 for a splitting).
* `Series`: an element of the free associative algebra truncated at a total weight (a dict
  word -> coefficient; a word is a tuple of generator indices), optionally restricted further
  to a factor-closed set of words (the complement of such a set spans an ideal, so products,
  `exp` and `log` stay exact on it). Coefficients may come from any commutative ring that
  supports `+`, `-`, `*` and multiplication by `Fraction` scalars: `Fraction` for exact
  checks, floats, numpy arrays, or `QSym` below.
* Lie structure: Lyndon words with their standard bracketing form a basis of the free Lie
  algebra in each weight (`LieBasis`); the coordinates of a Lie element in that basis follow
  from its coefficients on the Lyndon words by a triangular solve (the expansion of the bracketed
  Lyndon word l has l as its smallest word, with coefficient 1). `witt_dimension` is the graded
  Witt formula that the basis sizes must match.
* `QSym`: the ring of (coloured) quasi-symmetric functions of an ordered list of stage
  coefficients, M_a = sum_{i1<...<ik} v_{i1}^{e1} ... v_{ik}^{ek} with each stage's colour
  matching its part's. The coefficients of a product of exponentials
  exp(Y_1) ... exp(Y_s), Y_i = sum_x v_i^{e(x)} x, are such functions for every s at once,
  so `log` of `stage_product` with QSym coefficients gives the order conditions of a whole
  class of methods as exact rational combinations of iterated sums, independent of the number
  of stages. `QSym.evaluate` turns them into numbers for a concrete list of stages.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cache
from typing import Any

Word = tuple[int, ...]
Part = tuple[int, int]  # (colour, exponent) of one factor of an iterated sum
Comp = tuple[Part, ...]  # a coloured composition: the index of a quasi-symmetric monomial

# ----------------------------------------------------------------------------- alphabets


@dataclass(frozen=True)
class Alphabet:
    """Ordered generators with weights; letter i is `names[i]`, and letters compare by index."""

    names: tuple[str, ...]
    weights: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.names) != len(self.weights) or not self.names:
            raise ValueError("an alphabet needs one positive weight per generator")
        if any(w < 1 for w in self.weights):
            raise ValueError("generator weights must be positive integers")

    def weight(self, word: Word) -> int:
        return sum(self.weights[i] for i in word)

    def words(self, weight: int) -> list[Word]:
        """All words of exactly this total weight, in lexicographic order."""
        return list(_words_of_weight(self.weights, weight))

    def words_upto(self, weight: int) -> list[Word]:
        return [w for n in range(weight + 1) for w in self.words(n)]

    def show(self, word: Word) -> str:
        return "".join(self.names[i] for i in word) or "1"

    def show_bracket(self, bracket: Any) -> str:
        if isinstance(bracket, int):
            return self.names[bracket]
        left, right = bracket
        return f"[{self.show_bracket(left)},{self.show_bracket(right)}]"


@cache
def _words_of_weight(weights: tuple[int, ...], n: int) -> tuple[Word, ...]:
    if n == 0:
        return ((),)
    out: list[Word] = []
    for i, w in enumerate(weights):
        if w <= n:
            out.extend((i,) + rest for rest in _words_of_weight(weights, n - w))
    return tuple(out)


def odd_generators(max_weight: int) -> Alphabet:
    """X1, X3, X5, ... up to `max_weight`: the odd terms of log S(h) for a symmetric base S."""
    ks = tuple(range(1, max_weight + 1, 2))
    return Alphabet(tuple(f"X{k}" for k in ks), ks)


def factor_closure(words: Iterable[Word]) -> frozenset[Word]:
    """The words and all their contiguous sub-words (including the empty word)."""
    out: set[Word] = {()}
    for w in words:
        for i in range(len(w)):
            for j in range(i + 1, len(w) + 1):
                out.add(w[i:j])
    return frozenset(out)


# ----------------------------------------------------------------------------- series


def _is_zero(c: Any) -> bool:
    if isinstance(c, (int, Fraction, float)):
        return c == 0
    test = getattr(c, "is_zero", None)
    return bool(test()) if callable(test) else False


def exact(q: Fraction) -> Fraction:
    return q


@dataclass
class Series:
    """An element of the truncated free associative algebra: {word: coefficient}.

    `max_weight` truncates; `support` (a factor-closed word set, or None for all words)
    restricts further. `scalar` turns the rational constants of exp/log (1/n!, (-1)^(n+1)/n)
    into the coefficient ring (identity for Fraction and QSym, `float` for floats and numpy).
    Zero coefficients are dropped where they can be recognised as zero.
    """

    alphabet: Alphabet
    max_weight: int
    terms: dict[Word, Any] = field(default_factory=dict)
    support: frozenset[Word] | None = None
    scalar: Callable[[Fraction], Any] = exact

    # construction helpers ---------------------------------------------------------------
    def like(self, terms: Mapping[Word, Any]) -> Series:
        return Series(self.alphabet, self.max_weight, dict(terms), self.support, self.scalar)

    def keeps(self, word: Word) -> bool:
        if self.alphabet.weight(word) > self.max_weight:
            return False
        return self.support is None or word in self.support

    def one(self) -> Series:
        return self.like({(): self.scalar(Fraction(1))})

    @classmethod
    def generator_sum(
        cls,
        alphabet: Alphabet,
        max_weight: int,
        coefficients: Mapping[int, Any],
        support: frozenset[Word] | None = None,
        scalar: Callable[[Fraction], Any] = exact,
    ) -> Series:
        """sum_i c_i x_i for the given letters (a linear element)."""
        s = cls(alphabet, max_weight, {}, support, scalar)
        s.terms = {(i,): c for i, c in coefficients.items() if s.keeps((i,)) and not _is_zero(c)}
        return s

    # ring operations ---------------------------------------------------------------------
    def __add__(self, other: Series) -> Series:
        out = dict(self.terms)
        for w, c in other.terms.items():
            out[w] = out[w] + c if w in out else c
        return self.like({w: c for w, c in out.items() if not _is_zero(c)})

    def __neg__(self) -> Series:
        return self.like({w: -c for w, c in self.terms.items()})

    def __sub__(self, other: Series) -> Series:
        return self + (-other)

    def scale(self, k: Any) -> Series:
        return self.like({w: c * k for w, c in self.terms.items()})

    def __mul__(self, other: Series) -> Series:
        if self.support is not None and len(self.support) < len(self.terms) * len(other.terms):
            out: dict[Word, Any] = {}
            for u in self.support:
                if self.alphabet.weight(u) > self.max_weight:
                    continue
                acc = None
                for k in range(len(u) + 1):
                    a = self.terms.get(u[:k])
                    if a is None:
                        continue
                    b = other.terms.get(u[k:])
                    if b is None:
                        continue
                    acc = a * b if acc is None else acc + a * b
                if acc is not None and not _is_zero(acc):
                    out[u] = acc
            return self.like(out)
        out = {}
        right = other._by_weight()
        for na, left in self._by_weight().items():
            for nb, terms in right.items():
                if na + nb > self.max_weight:
                    continue
                for u, a in left:
                    for v, b in terms:
                        w = u + v
                        if self.support is not None and w not in self.support:
                            continue
                        out[w] = out[w] + a * b if w in out else a * b
        return self.like({w: c for w, c in out.items() if not _is_zero(c)})

    def _by_weight(self) -> dict[int, list[tuple[Word, Any]]]:
        groups: dict[int, list[tuple[Word, Any]]] = {}
        wt = self.alphabet.weight
        for w, c in self.terms.items():
            groups.setdefault(wt(w), []).append((w, c))
        return groups

    def bracket(self, other: Series) -> Series:
        return self * other - other * self

    # pieces ------------------------------------------------------------------------------
    def constant(self) -> Any:
        return self.terms.get(())

    def part(self, weight: int) -> Series:
        wt = self.alphabet.weight
        return self.like({w: c for w, c in self.terms.items() if wt(w) == weight})

    def weights_present(self) -> list[int]:
        return sorted({self.alphabet.weight(w) for w in self.terms})

    def _min_letter_weight(self) -> int:
        return min(self.alphabet.weights)

    # exp / log -----------------------------------------------------------------------------
    def exp(self) -> Series:
        """exp of a series without constant term: sum_n X^n / n!."""
        if self.constant() is not None and not _is_zero(self.constant()):
            raise ValueError("exp needs a series without constant term")
        out = self.one()
        power = self.one()
        for n in range(1, self.max_weight // self._min_letter_weight() + 1):
            power = power * self
            if not power.terms:
                break
            out = out + power.scale(self.scalar(Fraction(1, math.factorial(n))))
        return out

    def log(self) -> Series:
        """log of a series with constant term 1: sum_n (-1)^(n+1) (X - 1)^n / n."""
        c = self.constant()
        if c is None:
            raise ValueError("log needs a series with constant term 1")
        z = self - self.one()
        if z.constant() is not None and not _is_zero(z.constant()):
            raise ValueError("log needs a series with constant term 1")
        out = self.like({})
        power = self.one()
        for n in range(1, self.max_weight // self._min_letter_weight() + 1):
            power = power * z
            if not power.terms:
                break
            out = out + power.scale(self.scalar(Fraction((-1) ** (n + 1), n)))
        return out


def bch(x: Series, y: Series) -> Series:
    """log(exp(x) exp(y)), truncated like x."""
    return (x.exp() * y.exp()).log()


# ----------------------------------------------------------------------------- Lie basis


def is_lyndon(word: Word) -> bool:
    """Non-empty and strictly smaller than each of its proper suffixes."""
    return bool(word) and all(word < word[i:] for i in range(1, len(word)))


def lyndon_words(alphabet: Alphabet, weight: int) -> list[Word]:
    return [w for w in alphabet.words(weight) if is_lyndon(w)]


def standard_bracketing(word: Word) -> Any:
    """The standard bracketing of a Lyndon word: l = uv with v its longest proper Lyndon
    suffix, bracket(l) = [bracket(u), bracket(v)]; a letter is itself (an int)."""
    if len(word) == 1:
        return word[0]
    for i in range(1, len(word)):
        if is_lyndon(word[i:]):
            return (standard_bracketing(word[:i]), standard_bracketing(word[i:]))
    raise AssertionError("not a Lyndon word")  # pragma: no cover


def expand_bracket(bracket: Any, alphabet: Alphabet, max_weight: int) -> Series:
    """The bracket as an element of the free associative algebra, exact coefficients."""
    if isinstance(bracket, int):
        return Series.generator_sum(alphabet, max_weight, {bracket: Fraction(1)})
    left, right = bracket
    return expand_bracket(left, alphabet, max_weight).bracket(
        expand_bracket(right, alphabet, max_weight)
    )


class LieBasis:
    """The Lyndon basis of the weight-n part of the free Lie algebra on `alphabet`.

    Element k is the standard bracketing of `words[k]` (Lyndon words in increasing order).
    `coordinates` reads a Lie element's coordinates off its coefficients on the Lyndon words.
    """

    def __init__(self, alphabet: Alphabet, weight: int) -> None:
        self.alphabet = alphabet
        self.weight = weight
        self.words = lyndon_words(alphabet, weight)
        self.brackets = [standard_bracketing(w) for w in self.words]
        self.expansions = [expand_bracket(b, alphabet, weight) for b in self.brackets]
        # T[j][k]: coefficient of Lyndon word k in the expansion of basis element j (j < k).
        self._triangle = [
            [e.terms.get(w, Fraction(0)) for w in self.words] for e in self.expansions
        ]
        for k, e in enumerate(self.expansions):  # the triangularity the solve relies on
            assert e.terms.get(self.words[k]) == 1
            assert all(e.terms.get(self.words[j], 0) == 0 for j in range(k))

    def __len__(self) -> int:
        return len(self.words)

    def labels(self) -> list[str]:
        return [self.alphabet.show_bracket(b) for b in self.brackets]

    def coordinates(self, element: Series | Mapping[Word, Any]) -> list[Any]:
        """Coordinates c_k with element = sum_k c_k bracket_k (element must be a Lie element of
        this weight; only its coefficients on the Lyndon words are read)."""
        terms = element.terms if isinstance(element, Series) else element
        coords: list[Any] = []
        for k, w in enumerate(self.words):
            c = terms.get(w, 0)
            for j in range(k):
                t = self._triangle[j][k]
                if t != 0:
                    c = c - coords[j] * t
            coords.append(c)
        return coords

    def combine(self, coords: Sequence[Any], like: Series) -> Series:
        """sum_k coords[k] * bracket_k as a series shaped like `like`."""
        out = like.like({})
        for c, e in zip(coords, self.expansions):
            if not _is_zero(c):
                out = out + like.like({w: q * c for w, q in e.terms.items() if like.keeps(w)})
        return out


def _mobius(n: int) -> int:
    result, m, p = 1, n, 2
    while p * p <= m:
        if m % p == 0:
            m //= p
            if m % p == 0:
                return 0
            result = -result
        p += 1
    return -result if m > 1 else result


def witt_dimension(weights: Sequence[int], n: int) -> int:
    """dim of the weight-n part of the free Lie algebra on generators of the given weights.

    Graded Witt formula: with g(t) = sum_x t^wt(x) and -log(1 - g(t)) = sum_d p_d t^d / d,
    dim L_n = (1/n) sum_{d | n} mu(n/d) p_d. (All generators of weight 1: p_d = k^d.)
    """
    g = [0] * (n + 1)
    for w in weights:
        if w <= n:
            g[w] += 1
    # -log(1 - g) = sum_m g^m / m; p_d = d * [t^d] of that.
    coeff = [Fraction(0)] * (n + 1)
    power = [Fraction(1)] + [Fraction(0)] * n
    for m in range(1, n + 1):
        power = [sum(power[i] * g[d - i] for i in range(d + 1)) for d in range(n + 1)]
        for d in range(n + 1):
            coeff[d] += power[d] / m
    p = [d * coeff[d] for d in range(n + 1)]
    total = sum(_mobius(n // d) * p[d] for d in range(1, n + 1) if n % d == 0)
    dim = total / n
    assert dim.denominator == 1
    return int(dim)


# ----------------------------------------------------------------------------- QSym


@cache
def _stuffle(a: Comp, b: Comp) -> tuple[tuple[Comp, int], ...]:
    """Quasi-shuffle of two coloured compositions with multiplicities: M_a M_b = sum c M_g.
    Parts of a and b may merge (same stage index: exponents add) only if their colours agree."""
    if not a:
        return ((b, 1),)
    if not b:
        return ((a, 1),)
    out: dict[Comp, int] = {}
    for rest, m in _stuffle(a[1:], b):
        key = (a[0],) + rest
        out[key] = out.get(key, 0) + m
    for rest, m in _stuffle(a, b[1:]):
        key = (b[0],) + rest
        out[key] = out.get(key, 0) + m
    if a[0][0] == b[0][0]:
        merged = (a[0][0], a[0][1] + b[0][1])
        for rest, m in _stuffle(a[1:], b[1:]):
            key = (merged,) + rest
            out[key] = out.get(key, 0) + m
    return tuple(out.items())


class QSym:
    """A coloured quasi-symmetric function: sum_a c_a M_a with exact rational c_a.

    M_a(stages) = sum over i1 < ... < ik of prod_t v_{i_t}^{e_t}, where the stage i_t must have
    colour c_t for a = ((c_1, e_1), ..., (c_k, e_k)); M_() = 1. Multiplication is the
    quasi-shuffle (stuffle) product, so the ring is commutative.
    """

    __slots__ = ("terms",)

    def __init__(self, terms: Mapping[Comp, Fraction] | None = None) -> None:
        self.terms: dict[Comp, Fraction] = {a: c for a, c in (terms or {}).items() if c != 0}

    @classmethod
    def monomial(cls, comp: Comp, coeff: Fraction | int = 1) -> QSym:
        return cls({comp: Fraction(coeff)})

    def is_zero(self) -> bool:
        return not self.terms

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (int, Fraction)):
            other = QSym({(): Fraction(other)})
        return isinstance(other, QSym) and self.terms == other.terms

    __hash__ = None  # type: ignore[assignment]

    def __add__(self, other: QSym | int | Fraction) -> QSym:
        if not isinstance(other, QSym):
            other = QSym({(): Fraction(other)})
        out = dict(self.terms)
        for a, c in other.terms.items():
            out[a] = out.get(a, 0) + c
        return QSym(out)

    __radd__ = __add__

    def __neg__(self) -> QSym:
        return QSym({a: -c for a, c in self.terms.items()})

    def __sub__(self, other: QSym | int | Fraction) -> QSym:
        return self + (-other if isinstance(other, QSym) else -Fraction(other))

    def __mul__(self, other: QSym | int | Fraction) -> QSym:
        if not isinstance(other, QSym):
            k = Fraction(other)
            return QSym({a: c * k for a, c in self.terms.items()})
        out: dict[Comp, Fraction] = {}
        for a, ca in self.terms.items():
            for b, cb in other.terms.items():
                cab = ca * cb
                for g, m in _stuffle(a, b):
                    out[g] = out.get(g, 0) + cab * m
        return QSym(out)

    __rmul__ = __mul__

    def degree(self) -> int:
        return max((sum(e for _, e in a) for a in self.terms), default=0)

    def __repr__(self) -> str:
        def show(a: Comp) -> str:
            return "M(" + ",".join(f"{e}" if c == 0 else f"{c}:{e}" for c, e in a) + ")"

        return " + ".join(f"{c}*{show(a)}" for a, c in sorted(self.terms.items())) or "0"

    def evaluate(self, colours: Sequence[int], values: Sequence[Any]) -> Any:
        """The function's value at the stages (colour_i, v_i), in the ring of the values
        (Fraction for an exact result, float, numpy arrays, ...)."""
        return evaluate_qsym([self], colours, values)[0]


def prefix_closure(comps: Iterable[Comp]) -> list[Comp]:
    """The compositions and all their prefixes, shortest first (the DP order)."""
    out: set[Comp] = {()}
    for a in comps:
        for k in range(1, len(a) + 1):
            out.add(a[:k])
    return sorted(out, key=lambda a: (len(a), a))


def evaluate_qsym(elements: Sequence[QSym], colours: Sequence[int], values: Sequence[Any]) -> list:
    """Evaluate several QSym elements at one list of stages by the stage-by-stage recurrence
    M_a(v_1..v_j) = M_a(v_1..v_{j-1}) + [colour_j = c_last] M_{a'}(v_1..v_{j-1}) v_j^{e_last}."""
    comps = prefix_closure(a for el in elements for a in el.terms)
    index = {a: i for i, a in enumerate(comps)}
    one = values[0] ** 0 if values else 1
    m: list[Any] = [one] + [0 * one] * (len(comps) - 1)
    max_e = max((p[1] for a in comps for p in a), default=0)
    for col, v in zip(colours, values):
        powers = [one]
        for _ in range(max_e):
            powers.append(powers[-1] * v)
        new = list(m)
        for i, a in enumerate(comps):
            if a and a[-1][0] == col:
                new[i] = new[i] + m[index[a[:-1]]] * powers[a[-1][1]]
        m = new
    out = []
    for el in elements:
        acc = 0 * one
        for a, c in el.terms.items():
            acc = acc + m[index[a]] * c
        out.append(acc)
    return out


def stage_product(
    alphabet: Alphabet,
    parts: Sequence[Part],
    max_weight: int,
    support: frozenset[Word] | None = None,
) -> Series:
    """prod_i exp(Y_i), Y_i = sum_x [colour(x) = colour_i] v_i^{e(x)} x, over any ordered list
    of stages, with QSym coefficients; `parts[x]` = (colour, exponent) of letter x.

    The coefficient of a word u is the sum over its cuttings into consecutive monochromatic
    blocks b (the letters one stage contributes; stages strictly increase from block to block)
    of prod_b 1/|b|! times M of the blocks' (colour, total exponent).
    """
    s = Series(alphabet, max_weight, {}, support)
    words = support if support is not None else alphabet.words_upto(max_weight)
    for u in words:
        if not s.keeps(u):
            continue
        s.terms[u] = _product_coefficient(tuple(parts[x] for x in u))
    return s


@cache
def _product_coefficient(letters: tuple[Part, ...]) -> QSym:
    if not letters:
        return QSym({(): Fraction(1)})
    out = QSym()
    colour = letters[0][0]
    exponent = 0
    for k in range(1, len(letters) + 1):  # first block = letters[:k]
        if letters[k - 1][0] != colour:
            break
        exponent += letters[k - 1][1]
        rest = _product_coefficient(letters[k:])
        head = ((colour, exponent),)
        scale = Fraction(1, math.factorial(k))
        out = out + QSym({head + a: c * scale for a, c in rest.terms.items()})
    return out


# ----------------------------------------------------------------------------- numbers


def to_fraction(x: float | int | Fraction) -> Fraction:
    return x if isinstance(x, Fraction) else Fraction(x)


def lie_coordinates_of_log(
    product: Series, weights: Iterable[int]
) -> dict[int, tuple[LieBasis, list[Any]]]:
    """log(product) projected on the Lyndon basis of each requested weight."""
    log = product.log()
    out = {}
    for n in weights:
        basis = LieBasis(product.alphabet, n)
        out[n] = (basis, basis.coordinates(log.part(n)))
    return out
