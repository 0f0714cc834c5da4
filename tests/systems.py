"""Sources several test files use: the one-body Kepler problem, gravitational N-body and a
pendulum with its length as a param."""

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

PENDULUM = """system Pendulum {
    param g = 9.81
    param l = 1.5
    state q[1], p[1]
    H = p[0]^2 / (2 * l^2) - g * l * cos(q[0])
}"""
