"""BG/NBD (Fader, Hardie & Lee 2005, "Counting your customers the easy way").

The classic "buy till you die" model of non-contractual customers: while alive a
customer buys as a Poisson process of rate lambda ~ Gamma(r, alpha); after each
purchase they drop out with probability p ~ Beta(a, b). Fitted by maximum likelihood
with scipy on (x, t_x, T) summaries: x = repeat transaction days, t_x = first to last
transaction day, T = first transaction day to the snapshot, in days.

Two packages need it: features (P(alive) and P(no purchase in 90 days) as features,
fitted per snapshot on that snapshot's histories) and training (the baseline every
churn model is measured against). No maintained implementation imports in our lock.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["BGNBD", "HORIZON_DAYS", "bgnbd_log_likelihood", "fit_bgnbd"]

HORIZON_DAYS = 90


@dataclass(frozen=True)
class BGNBD:
    """BG/NBD parameters: purchase rates ~ Gamma(r, alpha), dropout p ~ Beta(a, b)."""

    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float = float("nan")

    def p_alive(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        """P(still alive at T | x, t_x, T) (eq. 5 of the paper)."""
        x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            log_ratio = (
                np.log(self.a)
                - np.log(np.maximum(self.b + x - 1, 1e-12))
                + (self.r + x) * (np.log(self.alpha + T) - np.log(self.alpha + t_x))
            )
            odds = np.where(x > 0, np.exp(np.minimum(log_ratio, 700.0)), 0.0)
        return 1.0 / (1.0 + odds)

    def p_no_purchase(
        self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray, horizon: float = HORIZON_DAYS
    ) -> np.ndarray:
        """P(no transaction in (T, T + horizon]): dead, or alive and no purchase.

        An alive customer cannot drop out before their next purchase (BG/NBD's dropout
        follows a purchase), so given alive the count is Poisson with the posterior
        Gamma(r + x, alpha + T) rate.
        """
        x, T = np.asarray(x, dtype=float), np.asarray(T, dtype=float)
        alive = self.p_alive(x, t_x, T)
        none_if_alive = np.exp(
            (self.r + x) * (np.log(self.alpha + T) - np.log(self.alpha + T + horizon))
        )
        return 1.0 - alive + alive * none_if_alive


def bgnbd_log_likelihood(
    params: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray, weights: np.ndarray
) -> float:
    """Total log-likelihood (eq. 6 of the paper) for (r, alpha, a, b) = params."""
    from scipy.special import gammaln

    r, alpha, a, b = params
    a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    a2 = gammaln(a + b) + gammaln(b + x) - gammaln(b) - gammaln(a + b + x)
    a3 = -(r + x) * np.log(alpha + T)
    with np.errstate(divide="ignore", invalid="ignore"):
        a4 = np.where(
            x > 0,
            np.log(a) - np.log(np.maximum(b + x - 1, 1e-12)) - (r + x) * np.log(alpha + t_x),
            -np.inf,
        )
    return float(np.sum(weights * (a1 + a2 + np.logaddexp(a3, a4))))


def fit_bgnbd(
    x: np.ndarray, t_x: np.ndarray, T: np.ndarray, weights: np.ndarray | None = None
) -> BGNBD:
    """Maximum-likelihood BG/NBD on (x, t_x, T) summaries (identical rows may be weighted)."""
    from scipy.optimize import minimize

    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=float)
    if len(x) == 0 or not (T > 0).any():
        raise ValueError("BG/NBD needs customers with some history (T > 0)")
    # Identical summaries collapse into one weighted row: a bank has many.
    keys = np.stack([x, t_x, T], axis=1)
    unique, inverse = np.unique(keys, axis=0, return_inverse=True)
    w = np.bincount(inverse.ravel(), weights=w)
    x, t_x, T = unique[:, 0], unique[:, 1], unique[:, 2]
    scale = float(np.average(T, weights=w)) or 1.0

    def loss(log_params: np.ndarray) -> float:
        value = bgnbd_log_likelihood(np.exp(log_params), x, t_x, T, w)
        return -value / w.sum() if np.isfinite(value) else 1e10

    start = np.log([1.0, scale, 1.0, 1.0])
    bounds = [(-12.0, 12.0)] * 4
    best = minimize(loss, start, method="L-BFGS-B", bounds=bounds)
    if not best.success or not np.isfinite(best.fun):
        # A rough surface from the start: walk there without gradients, then polish.
        rough = minimize(loss, start, method="Nelder-Mead", options={"maxiter": 4000})
        best = minimize(loss, rough.x, method="L-BFGS-B", bounds=bounds)
    r, alpha, a, b = np.exp(best.x)
    return BGNBD(float(r), float(alpha), float(a), float(b), -float(best.fun) * float(w.sum()))
