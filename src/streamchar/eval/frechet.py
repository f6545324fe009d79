"""Fréchet distance between two Gaussians fitted to feature sets: the maths of FID and FVD.

    d^2 = |mu_1 - mu_2|^2 + tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2))

in float64, with scipy's matrix square root (as pytorch-fid and the FVD reference do); a near-singular
product gets `eps` on the diagonals, and an imaginary part left by round-off is dropped only when it is
negligible. The features (Inception pool 2048-d for FID, I3D logits 400-d for FVD) come from
`streamchar.eval.features`; this module only sees arrays.
"""

from __future__ import annotations

import numpy as np

from streamchar.errors import StreamCharError


def gaussian_stats(features) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) features -> mean (D,) and covariance (D, D) in float64 (unbiased, N - 1)."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise StreamCharError(f"features must be (N, D), got shape {x.shape}")
    if x.shape[0] < 2:
        raise StreamCharError(f"a covariance needs at least 2 feature vectors, got {x.shape[0]}")
    if not np.isfinite(x).all():
        raise StreamCharError("features contain NaN or inf")
    return x.mean(axis=0), np.cov(x, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """Squared Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) (what FID / FVD report)."""
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise StreamCharError(f"frechet_distance: shapes disagree: mu {mu1.shape} / {mu2.shape}, "
                              f"sigma {s1.shape} / {s2.shape}")
    diff = mu1 - mu2
    covmean = linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        offset = np.eye(s1.shape[0]) * eps
        covmean = linalg.sqrtm((s1 + offset) @ (s2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise StreamCharError(f"frechet_distance: the matrix square root has an imaginary part of "
                                  f"{np.abs(covmean.imag).max():.3g}: the covariances are ill-conditioned "
                                  "(too few samples for the feature dimension?)")
        covmean = covmean.real
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))


def frechet_distance_features(a, b) -> float:
    """Squared Fréchet distance between the Gaussians fitted to two (N, D) feature sets."""
    return frechet_distance(*gaussian_stats(a), *gaussian_stats(b))
