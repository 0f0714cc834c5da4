"""Sources several test files use: the one-body Kepler problem and gravitational N-body."""

KEPLER = """system Kepler {
    param mu = 1.0
    state q[3], p[3]
    H = dot(p, p) / 2 - mu / norm(q)
}"""

NBODY = """system NBody {
    param G = 1.0
    input m[N]
    state q[N, 3], p[N, 3]
    H = sum(i: dot(p[i], p[i]) / (2 * m[i])) - G * sum(i < j: m[i] * m[j] / norm(q[i] - q[j]))
}"""
