import numpy as np
import pytest

from streamchar.errors import StreamCharError
from streamchar.eval.frechet import frechet_distance, frechet_distance_features, gaussian_stats


def random_spd(rng, d):
    a = rng.normal(size=(d, d))
    return a @ a.T + d * np.eye(d)


def test_closed_form_for_commuting_covariances():
    # diagonal covariances commute: tr((S1 S2)^1/2) = sum sqrt(s1_i s2_i), so
    # d^2 = |mu1 - mu2|^2 + sum (sqrt(s1_i) - sqrt(s2_i))^2
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    s1, s2 = rng.uniform(0.5, 3, 5), rng.uniform(0.5, 3, 5)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2)
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-10)


def test_closed_form_in_one_dimension_and_general_matrices():
    assert frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(2.0**2 + (2.0 - 3.0) ** 2)
    rng = np.random.default_rng(1)
    d = 6
    s1, s2 = random_spd(rng, d), random_spd(rng, d)
    # general case: tr((S1 S2)^1/2) = tr((S1^1/2 S2 S1^1/2)^1/2), computed here by eigendecompositions
    w, v = np.linalg.eigh(s1)
    r1 = v @ np.diag(np.sqrt(w)) @ v.T
    inner = np.linalg.eigvalsh(r1 @ s2 @ r1)
    expected = np.trace(s1) + np.trace(s2) - 2 * np.sum(np.sqrt(inner))
    assert frechet_distance(np.zeros(d), s1, np.zeros(d), s2) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(np.ones(d), s1, np.ones(d), s1) == pytest.approx(0.0, abs=1e-8)


def test_samples_approach_the_population_value():
    rng = np.random.default_rng(2)
    a = rng.normal(0.0, 1.0, size=(20000, 4))
    b = rng.normal(0.5, 2.0, size=(20000, 4))
    expected = 4 * 0.5**2 + 4 * (1.0 - 2.0) ** 2  # 5
    assert frechet_distance_features(a, b) == pytest.approx(expected, rel=0.03)
    assert frechet_distance_features(a, a) == pytest.approx(0.0, abs=1e-8)


def test_errors():
    with pytest.raises(StreamCharError, match="at least 2"):
        gaussian_stats(np.zeros((1, 3)))
    with pytest.raises(StreamCharError, match="must be \\(N, D\\)"):
        gaussian_stats(np.zeros(3))
    with pytest.raises(StreamCharError, match="NaN"):
        gaussian_stats(np.array([[0.0, np.nan], [1.0, 2.0]]))
    with pytest.raises(StreamCharError, match="shapes disagree"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))
