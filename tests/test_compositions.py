"""The BCH engine and the composition / splitting methods synthesised from order conditions.

References here are independent of the code under test: the BCH series to weight 4, Witt's
formula, published coefficient tables (Yoshida 1990, McLachlan 1995, Blanes & Moan 2002),
closed forms (Suzuki, the triple jump) and a plain-Python Kepler integrator.
"""

from __future__ import annotations

import json
import math
import random
from fractions import Fraction

import numpy as np
import pytest
from tpc.passes import compositions as comp
from tpc.passes.bch import (
    Alphabet,
    LieBasis,
    QSym,
    Series,
    bch,
    evaluate_qsym,
    lyndon_words,
    odd_generators,
    stage_product,
    witt_dimension,
)

F = Fraction


@pytest.fixture(autouse=True)
def fresh_cache(tmp_path, monkeypatch):
    """Every test solves cold, in its own cache directory (derived conditions stay in memory)."""
    monkeypatch.setenv("TPC_CACHE_DIR", str(tmp_path / "cache"))
    comp._MEMORY.clear()
    yield
    comp._MEMORY.clear()


# ----------------------------------------------------------------------------- the engine

XY = Alphabet(("X", "Y"), (1, 1))


def gen(i: int, top: int = 4, alphabet: Alphabet = XY) -> Series:
    return Series.generator_sum(alphabet, top, {i: F(1)})


def test_bch_of_two_generators_to_weight_4():
    x, y = gen(0), gen(1)
    z = bch(x, y)
    expected = (
        x
        + y
        + x.bracket(y).scale(F(1, 2))
        + (x.bracket(x.bracket(y)) + y.bracket(y.bracket(x))).scale(F(1, 12))
        - y.bracket(x.bracket(x.bracket(y))).scale(F(1, 24))
    )
    assert (z - expected).terms == {}


def test_exp_log_round_trip_and_lie_coordinates():
    x, y = gen(0, 6), gen(1, 6)
    z = bch(x, y)
    assert ((z.exp()).log() - z).terms == {}
    for n in range(1, 7):
        basis = LieBasis(XY, n)
        part = z.part(n)
        assert (basis.combine(basis.coordinates(part), part) - part).terms == {}


@pytest.mark.parametrize(
    "weights, top",
    [((1, 1), 10), ((1, 1, 1), 6), ((1, 3, 5, 7, 9), 11), ((1, 2), 9)],
)
def test_lie_basis_dimensions_match_witt(weights, top):
    alphabet = Alphabet(tuple(f"x{i}" for i in range(len(weights))), weights)
    for n in range(1, top + 1):
        assert len(lyndon_words(alphabet, n)) == witt_dimension(weights, n)
    # the classical values for two letters: (1/n) sum_{d|n} mu(d) 2^(n/d)
    assert [witt_dimension((1, 1), n) for n in range(1, 11)] == [2, 1, 2, 3, 6, 9, 18, 30, 56, 99]


def test_symmetric_composition_log_has_no_even_weight_terms():
    """Exactly, for a palindromic product of exp(sum_k w^k X_k) (a symmetric base's log)."""
    top = 8
    alphabet = Alphabet(("X1", "X3", "X5", "X7"), (1, 3, 5, 7))
    rng = random.Random(7)
    half = [F(rng.randint(-9, 9), 7) for _ in range(3)]
    w = half + [1 - 2 * sum(half)] + half[::-1]
    product = Series(alphabet, top).one()
    for wi in w:
        y = Series.generator_sum(alphabet, top, {i: wi**k for i, k in enumerate(alphabet.weights)})
        product = product * y.exp()
    log = product.log()
    for n in range(2, top + 1, 2):
        assert log.part(n).terms == {}, n
    assert all(log.part(n).terms for n in range(1, top, 2))
    assert log.part(1).terms == {(0,): F(1)}


def test_qsym_conditions_match_the_direct_product():
    """The QSym route (all stage counts at once) agrees with multiplying out the stages."""
    top = 7
    alphabet = odd_generators(top)
    parts = [(0, k) for k in alphabet.weights]
    log_q = stage_product(alphabet, parts, top).log()
    rng = random.Random(3)
    w = [F(rng.randint(-5, 5), 3) for _ in range(4)]  # not palindromic: even weights too
    direct = Series(alphabet, top).one()
    for wi in w:
        y = Series.generator_sum(alphabet, top, {i: wi**k for i, k in enumerate(alphabet.weights)})
        direct = direct * y.exp()
    log_d = direct.log()
    for word, c in log_d.terms.items():
        assert log_q.terms[word].evaluate([0] * len(w), w) == c
    # coloured stages: e^{aA} e^{bB} e^{cA} against the two-letter BCH
    ab = Alphabet(("A", "B"), (1, 1))
    log2 = stage_product(ab, [(0, 1), (1, 1)], 5).log()
    a, b, c = F(2, 3), F(-1, 5), F(3, 7)
    ref = (
        Series.generator_sum(ab, 5, {0: a}).exp()
        * Series.generator_sum(ab, 5, {1: b}).exp()
        * Series.generator_sum(ab, 5, {0: c}).exp()
    ).log()
    for word, coeff in ref.terms.items():
        assert log2.terms[word].evaluate([0, 1, 0], [a, b, c]) == coeff


def test_qsym_stuffle_is_the_product_of_iterated_sums():
    m12 = QSym.monomial(((0, 1), (0, 2)))
    m3 = QSym.monomial(((0, 3),))
    v = [F(2), F(-3), F(5), F(7, 2)]
    lhs = (m12 * m3).evaluate([0] * 4, v)
    assert lhs == m12.evaluate([0] * 4, v) * m3.evaluate([0] * 4, v)
    assert evaluate_qsym([m3], [0] * 4, v)[0] == sum(x**3 for x in v)


def test_leapfrog_third_order_term():
    """log(e^{V/2} e^T e^{V/2}) = T + V - [V,[V,T]]/24 + [T,[T,V]]/12 + O(5)."""
    x3 = comp._leapfrog_terms(3)[3]
    t, v = gen(0, 3, comp.TV), gen(1, 3, comp.TV)
    ref = v.bracket(v.bracket(t)).scale(F(-1, 24)) + t.bracket(t.bracket(v)).scale(F(1, 12))
    assert (x3 - ref).terms == {}


def test_condition_counts():
    counts = {4: 2, 6: 4, 8: 8}  # 1, 1, 2, 4 conditions at weights 1, 3, 5, 7
    for order, n in counts.items():
        oc = comp.composition_conditions(order)
        assert len(oc.conditions) == n
        assert len(oc.error_generic_terms) == witt_dimension((1, 3, 5, 7, 9), order + 1)
        assert len(oc.error_labels) == witt_dimension((1, 1), order + 1)
    assert comp.splitting_conditions(4).labels == ("A", "B", "[A,[A,B]]", "[[A,B],B]")


# ----------------------------------------------------------------------------- Yoshida

# Yoshida (1990), Phys. Lett. A 150, 262, Table 1: w1, w2, w3 (w1 next to the centre).
YOSHIDA_6 = {
    "A": (-1.17767998417887, 0.235573213359357, 0.784513610477560),
    "B": (-2.13228522200144, 0.00426068187079180, 1.43984816797678),
    "C": (0.00152886228424922, -2.14403531630539, 1.44778256239930),
}
# Solution A to 20 digits (as reprinted in later reviews).
YOSHIDA_6A_20 = (-1.17767998417887100695, 0.23557321335935813368, 0.78451361047755726382)
# Table 2, solution D: w1 ... w7.
YOSHIDA_8D = (
    0.102799849391985,
    -1.96061023297549,
    1.93813913762276,
    -0.158240635368243,
    -1.44485223686048,
    0.253693336566229,
    0.914844246229740,
)


def half_of(published):
    """Yoshida's (w1 .. wm) -> our unknowns (outermost first, centre last)."""
    return np.array(list(published[::-1]) + [1.0 - 2.0 * sum(published)])


def published_tolerance(value: float) -> float:
    """1e-14 beyond the rounding of a 15-significant-digit published value."""
    digits = 15 - 1 - math.floor(math.log10(abs(value)))
    return 1e-14 + 0.5 * 10.0 ** (-min(digits, 17))


def test_order6_seven_stages_finds_yoshida_a_b_c():
    m = comp.symmetric_composition(6, 7)
    assert m.n_solutions == 3
    for name, published in YOSHIDA_6.items():
        ref = half_of(published)[:3]
        match = [c for c in m.solutions if np.abs(np.array(c.unknowns[:3]) - ref).max() < 1e-9]
        assert len(match) == 1, name
        got = match[0].unknowns
        for g, p in zip(got[:3], ref):
            assert abs(g - p) < published_tolerance(p), (name, g, p)
        assert comp.assess_composition(6, got + got[-2::-1]).residual < 1e-14
        assert math.isfinite(match[0].error) and match[0].error > 0
    a = comp.yoshida(6)
    assert np.abs(np.array(a.unknowns[:3]) - half_of(YOSHIDA_6A_20)[:3]).max() < 1e-15
    assert a.unknowns == min(a.solutions, key=lambda c: c.error).unknowns
    assert a.unknowns == min(a.solutions, key=lambda c: c.max_step).unknowns
    assert a.residual < 1e-14 and a.weights == a.weights[::-1] and abs(sum(a.weights) - 1) < 1e-15


def test_yoshida8_is_solution_d():
    d = comp.yoshida(8)
    assert d.stages == 15 and d.residual < 1e-14
    # Yoshida's printed digits carry ~2e-13 errors (his D has residual ~3e-12 in our
    # conditions); our root is exact to the last bit.
    assert np.abs(np.array(d.unknowns) - half_of(YOSHIDA_8D)).max() < 3e-13
    published = comp.assess_composition(
        8, tuple(half_of(YOSHIDA_8D)) + tuple(half_of(YOSHIDA_8D))[-2::-1]
    )
    assert 1e-13 < published.residual < 1e-10
    assert d.error_generic == pytest.approx(14.44, rel=1e-3)


def test_yoshida8_label_names_one_root():
    """D is named by its one-decimal label: Newton from 64 starts in the label's cell reaches
    several roots (the cell is not one basin), and every one that rounds to the label is D."""
    d = comp.yoshida(8)
    problem = comp._Problem("composition", 8, 15)
    ev = comp.Evaluator(problem.conditions.conditions, problem.layout)
    target = np.array([float(t) for t in problem.conditions.targets])
    label = np.array(comp._yoshida_d_label())
    starts = label[None] + np.random.default_rng(1).uniform(-0.05, 0.05, (64, label.size))
    roots = comp._newton_batch(ev, target, starts, 40)
    labelled = [r for r in roots if comp._rounds_to_label(r)]
    others = [r for r in roots if not comp._rounds_to_label(r)]
    assert len(labelled) >= 8 and len(others) >= 1
    for r in labelled:
        assert np.abs(r - np.array(d.unknowns)).max() < 1e-10
    assert comp._rounds_to_label(d.unknowns)


def test_yoshida4_and_triple_jumps():
    y4 = comp.yoshida(4)
    x1 = 1 / (2 - 2 ** (1 / 3))
    assert y4.n_solutions == 1
    assert np.allclose(y4.weights, [x1, 1 - 2 * x1, x1], rtol=0, atol=1e-15)
    for order, stages in ((4, 3), (6, 9), (8, 27)):
        tj = comp.triple_jump(order)
        assert tj.stages == stages and tj.residual < 1e-14
        assert abs(sum(tj.weights) - 1) < 1e-14
        assert np.allclose(tj.weights, comp.triple_jump_weights(order), rtol=0, atol=1e-14)


# ----------------------------------------------------------------------------- (4, 5)

SUZUKI = 1 / (4 - 4 ** (1 / 3))
MCLACHLAN_4_5 = (0.28, 0.62546642846767004501)  # McLachlan (1995), SIAM J. Sci. Comput. 16


def family_w2(w1: float) -> list[float]:
    """Real w2 with (w1, w2, 1 - 2 w1 - 2 w2, w2, w1) of order 4 (the cubic, independently)."""
    x = np.polynomial.Polynomial([0, 1])
    poly = 2 * w1**3 + 2 * x**3 + (1 - 2 * w1 - 2 * x) ** 3
    return [r.real for r in poly.roots() if abs(r.imag) < 1e-9]


def weights5(w1: float, w2: float) -> tuple[float, ...]:
    return (w1, w2, 1 - 2 * w1 - 2 * w2, w2, w1)


def test_order4_five_stages_family_and_optimum():
    assert comp.assess_composition(4, weights5(SUZUKI, SUZUKI)).residual < 1e-14
    assert comp.assess_composition(4, weights5(*MCLACHLAN_4_5)).residual < 1e-14
    w2 = min(family_w2(0.28), key=lambda r: abs(r - MCLACHLAN_4_5[1]))
    assert abs(w2 - MCLACHLAN_4_5[1]) < 1e-14
    m = comp.symmetric_composition(4, 5)
    assert m.family_dim == 1 and m.residual < 1e-14
    assert round(m.unknowns[0], 2) == MCLACHLAN_4_5[0]  # McLachlan published w1 = 0.28
    assert abs(m.unknowns[1] - MCLACHLAN_4_5[1]) < 0.02
    suzuki = comp.assess_composition(4, weights5(SUZUKI, SUZUKI))
    assert m.error < suzuki.error
    # stationarity of the error coefficient along the family at the optimum
    w1 = m.unknowns[0]

    def error_at(x: float) -> float:
        w2 = min(family_w2(x), key=lambda r: abs(r - m.unknowns[1]))
        return comp.assess_composition(4, weights5(x, w2)).error

    def slope(x: float, h: float = 1e-4) -> float:
        return (error_at(x + h) - error_at(x - h)) / (2 * h)

    curvature = (error_at(w1 + 1e-4) - 2 * error_at(w1) + error_at(w1 - 1e-4)) / 1e-8
    assert curvature > 0
    assert abs(slope(w1)) < 1e-5 * curvature  # the minimum within 1e-5 in w1
    assert abs(slope(0.28)) > 1e-3 * curvature  # while McLachlan's rounded 0.28 is not it


# ----------------------------------------------------------------------------- splittings

# Blanes & Moan (2002), J. Comput. Appl. Math. 142, S6 (order 4, six B-flows), A outermost.
BM_A = (0.0792036964311957, 0.353172906049774, -0.0420650803577195)
BM_B = (0.209515106613362, -0.143851773179818)


def test_splitting_order4_six_b_flows():
    a = list(BM_A) + [1 - 2 * sum(BM_A)]
    a = a + a[-2::-1]
    b = list(BM_B) + [0.5 - sum(BM_B)]
    b = b + b[::-1]
    bm = comp.assess_splitting(4, a, b)
    assert bm.residual < 1e-14
    m = comp.compose("A", "B", order=4, stages=6)
    assert isinstance(m, comp.Splitting) and m.family_dim == 3
    assert m.residual < 1e-14 and len(m.a) == 7 and len(m.b) == 6
    assert abs(sum(m.a) - 1) < 1e-15 and abs(sum(m.b) - 1) < 1e-15
    assert m.error <= bm.error
    # the local optimum next to S6 is among the optima found
    assert any(
        np.abs(
            np.array(c.unknowns) - [0.0701, 0.3466, -0.0497, 0.2660, 0.1882, -0.1264, 0.4381]
        ).max()
        < 1e-3
        for c in m.solutions
    )


def test_splitting_square_system():
    m = comp.splitting_method(4, 3)  # Forest-Ruth type: 4 unknowns, 4 conditions
    assert m.family_dim == 0 and m.n_solutions >= 1 and m.residual < 1e-14


# ----------------------------------------------------------------------------- (8, 15) search


def test_order8_synthesis_small_search():
    """The multistart machinery on the 15-stage system, with a small search to stay fast."""
    problem = comp._Problem("composition", 8, 15)
    search = comp._Search(starts=0, scales=(), iterations=40, product_starts=200)
    cands, dim = comp._solve(problem, search)
    assert dim == 0 and cands
    for c in cands:
        w = c.unknowns + c.unknowns[-2::-1]
        assert comp.assess_composition(8, w).residual < 1e-14
    assert [c.error for c in cands] == sorted(c.error for c in cands)


# ----------------------------------------------------------------------------- convergence


def kepler_error(weights, n_steps: int, e: float = 0.6) -> float:
    """Leapfrog (kick-drift-kick) composed with `weights` over one period of a Kepler orbit."""
    qx, qy = 1.0 - e, 0.0
    px, py = 0.0, math.sqrt((1 + e) / (1 - e))
    h = 2 * math.pi / n_steps
    subs = [w * h for w in weights]
    for _ in range(n_steps):
        for dt in subs:
            r3 = (qx * qx + qy * qy) ** 1.5
            px -= 0.5 * dt * qx / r3
            py -= 0.5 * dt * qy / r3
            qx += dt * px
            qy += dt * py
            r3 = (qx * qx + qy * qy) ** 1.5
            px -= 0.5 * dt * qx / r3
            py -= 0.5 * dt * qy / r3
    return math.hypot(qx - (1 - e), qy)


def measured_order(weights, steps) -> float:
    errors = [kepler_error(weights, n) for n in steps]
    return -np.polyfit(np.log(steps), np.log(errors), 1)[0]


@pytest.mark.parametrize(
    "method, steps",
    [
        (lambda: comp.yoshida(4), (400, 566, 800, 1131)),
        (lambda: comp.symmetric_composition(4, 5), (200, 283, 400, 566)),
        (lambda: comp.yoshida(6), (200, 283, 400, 566)),
        (lambda: comp.yoshida(8), (300, 424, 600, 849)),
    ],
)
def test_kepler_convergence_order(method, steps):
    m = method()
    assert abs(measured_order(m.weights, steps) - m.order) < 0.15


def test_splitting_kepler_convergence():
    m = comp.splitting_method(4, 6)
    steps = (100, 141, 200, 283)
    errors = []
    for n in steps:
        e = 0.6
        qx, qy, px, py = 1.0 - e, 0.0, 0.0, math.sqrt((1 + e) / (1 - e))
        h = 2 * math.pi / n
        for _ in range(n):
            for k, c in enumerate(m.coefficients):
                dt = c * h
                if k % 2 == 0:  # A: drift
                    qx += dt * px
                    qy += dt * py
                else:  # B: kick
                    r3 = (qx * qx + qy * qy) ** 1.5
                    px -= dt * qx / r3
                    py -= dt * qy / r3
        errors.append(math.hypot(qx - (1 - e), qy))
    order = -np.polyfit(np.log(steps), np.log(errors), 1)[0]
    assert abs(order - 4) < 0.15


# ----------------------------------------------------------------------------- caching


def test_cache_round_trip_and_corrupt_file(tmp_path):
    first = comp.symmetric_composition(4, 3)
    assert not first.cached
    path = comp._DISK.path()
    assert path.exists()
    comp._MEMORY.clear()
    again = comp.symmetric_composition(4, 3)
    assert again.cached and again.weights == first.weights
    path.write_text("{ this is not json")
    comp._MEMORY.clear()
    fresh = comp.symmetric_composition(4, 3)
    assert not fresh.cached and fresh.weights == first.weights
    data = json.loads(path.read_text())  # rewritten, valid again
    assert any(k.startswith("solutions:composition:4:3:") for k in data["entries"])


def test_cache_tampered_entries_are_resolved():
    comp.symmetric_composition(4, 3)
    path = comp._DISK.path()
    data = json.loads(path.read_text())
    key = next(k for k in data["entries"] if k.startswith("solutions:composition:4:3:"))
    data["entries"][key]["payload"] = [[1.0, -1.0]]  # wrong numbers, stale checksum
    path.write_text(json.dumps(data))
    comp._MEMORY.clear()
    assert not comp.symmetric_composition(4, 3).cached
    data = json.loads(path.read_text())
    payload = [[1.0, -1.0]]  # a valid checksum but not a root: re-verified and re-solved
    data["entries"][key] = {"payload": payload, "sha256": comp._digest(payload)}
    path.write_text(json.dumps(data))
    comp._MEMORY.clear()
    m = comp.symmetric_composition(4, 3)
    assert not m.cached and m.residual < 1e-14


def test_unwritable_cache_never_fails(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("TPC_CACHE_DIR", str(blocker / "sub"))
    with pytest.warns(UserWarning, match="could not write composition cache"):
        m = comp.symmetric_composition(4, 3)
    assert m.residual < 1e-14


# ----------------------------------------------------------------------------- bad requests


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: comp.symmetric_composition(5, 7), "even order"),
        (lambda: comp.symmetric_composition(0, 7), "even order"),
        (lambda: comp.symmetric_composition(10, 31), "supported maximum 8"),
        (lambda: comp.symmetric_composition(6, 5), "too few"),
        (lambda: comp.symmetric_composition(8, 13), "too few"),
        (lambda: comp.splitting_method(4, 2), "too few"),
        (lambda: comp.symmetric_composition(4, 4), "no real solution"),
        (lambda: comp.yoshida(10), "supported maximum 8"),
        (lambda: comp.yoshida(2), "order 4, 6 or 8"),
        (lambda: comp.compose("A", order=4, stages=3), "no parts or two"),
    ],
)
def test_bad_requests_raise_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_describe_is_one_line_with_the_numbers():
    for m in (comp.yoshida(6), comp.splitting_method(4, 3), comp.triple_jump(6)):
        text = m.describe()
        assert "\n" not in text
        assert repr(m.unknowns[0]) in text and "residual" in text and "error coefficient" in text
