"""Bayesian excess variance (bexvar; Buchner et al. 2022, A&A 661, A18, Sect. 2.4), vectorised.

The model (as in the paper and its reference package, which takes seconds per light curve with
nested sampling): in every time bin ``t`` the source has its own count rate ``R_t``; the
logarithms ``log10 R_t`` are drawn from a normal distribution of mean ``mu`` (``bexvar_log_rate``)
and standard deviation ``sigma`` (the intrinsic scatter in dex, ``bexvar_scatt``). The data of a
bin are the source-aperture counts ``C_t`` and background-region counts ``B_t``:

    C_t ~ Poisson(R_t k_t + lambda_t),   k_t = FRACEXP_t x TIMEDEL_t   (rate -> counts)
    lambda_t = b_t x BACKRATIO_t,        b_t ~ Gamma(B_t + 1, 1)         (background marginalised)

Step 1 (per bin): the likelihood of ``C_t`` on a grid of ``log10 R`` (the package's grid rule:
from the lowest plausible background-subtracted rate, never below 0.1 ct/s, to the highest
plausible total rate, 5 % padding), the background integrated with ``N_BACKGROUND`` Gamma
quantiles, normalised over the grid.

Step 2 (per source): the posterior of (``mu``, ``sigma``) with the package's priors (``mu``
uniform over the grid, ``sigma`` log-uniform in [0.01, 100] dex):

    log L(mu, sigma) = sum_t log( mean_g N(x_g | mu, sigma) p_t(x_g) )

Instead of sampling it, it is evaluated on a grid. The trick that makes this fast: ``sigma`` is
gridded in units of the source's own grid step, ``sigma_j = step_s x 10**nu_j`` with shared
``nu_j``, so the Gaussian kernel matrix (integrated over each grid cell) is the same for every
source and every bin of a batch becomes one row of a single matrix product (BLAS); ``sigma``
values outside the prior get no weight.

Outputs per band: ``bexvar_log_rate`` (posterior mean of ``mu``, log10 ct/s),
``bexvar_scatt`` (posterior median of ``sigma``), ``bexvar_scatt_lo`` / ``_hi`` (16 % / 84 %
quantiles) and ``bexvar_pvar_p1`` (posterior probability that ``sigma > 0.1`` dex), as the
reference package reports them.

Shape legend: S = sources in a batch, R = their bins, G = log-rate grid points, M = ``mu``
grid points, J = ``sigma`` grid points, Q = background quantiles.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse, special

from etl.lightcurve import FRACEXP_MIN

#: Log-rate grid points per source (the reference uses 100 per dex over its range).
GRID = 96
#: Background quadrature points (Gamma quantiles at (q + 0.5) / Q).
N_BACKGROUND = 24
#: ``mu`` takes every MU_STRIDE-th grid point; ``sigma`` N_NU values (the (mu, sigma) grid's cost is
#: linear in their product: 32 x 32 kept the reference agreement of 48 x 44 at half the time).
MU_STRIDE = 2
N_NU = 32
#: ``sigma_j = step x 10**NU[j]``: from below the prior's 0.01 dex to well past any grid's span.
NU = np.linspace(-1.0, np.log10(40.0 * (GRID - 1)), N_NU)
SIGMA_PRIOR = (1e-2, 1e2)
QUANTILES = special.ndtr(np.array([-1.0, 0.0, 1.0]))  # 1-sigma quantiles and median


def rate_grid(counts: np.ndarray, back_counts: np.ndarray, backratio: np.ndarray, conversion: np.ndarray,
              source: np.ndarray, n_sources: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-source log10 rate grid ``[start, stop]`` (the reference package's rule).

    Parameters
    ----------
    counts, back_counts, backratio, conversion : ndarray, shape (R,)
        Per bin; ``conversion = FRACEXP x TIMEDEL`` (s).
    source : ndarray of int, shape (R,)
        Source index of each bin (bins grouped by source, every source present).

    Returns
    -------
    start, stop : ndarray, shape (S,)
    """
    lowest_total = special.gammaincinv(counts + 1, 0.001) / conversion
    highest_background = special.gammaincinv(back_counts + 1, 0.999) * backratio / conversion
    highest_total = special.gammaincinv(counts + 1, 0.999) / conversion
    mindiff = np.full(n_sources, np.inf)
    np.minimum.at(mindiff, source, lowest_total - highest_background)
    top = np.full(n_sources, -np.inf)
    np.maximum.at(top, source, highest_total)
    with np.errstate(divide="ignore", invalid="ignore"):
        m0 = np.where(mindiff > 0, np.log10(np.where(mindiff > 0, mindiff, 1.0)), -1.0)
    m1 = np.log10(top)
    lo = m0 - 0.05 * (m1 - m0)
    hi = m1 + 0.05 * (m1 - m0)
    start = np.where(lo < -1.0, -1.0, lo)
    stop = np.maximum(hi, start + 0.05)
    return start, stop


def bin_likelihoods(counts, back_counts, backratio, conversion, log_rates) -> np.ndarray:
    """p_t(x_g): each bin's likelihood on its source's grid, background marginalised, normalised.

    Parameters
    ----------
    counts, back_counts, backratio, conversion : ndarray, shape (R,)
    log_rates : ndarray, shape (R, G)
        The grid of each bin's source.

    Returns
    -------
    ndarray, shape (R, G), float32; rows sum to 1.
    """
    source_counts = ((10.0 ** log_rates) * conversion[:, None]).astype(np.float32)  # (R, G)
    # An empty bin needs no quadrature: E_b[exp(-s - b r)] = exp(-s) (1 + r)^-(B + 1), and the
    # factor in r and B drops out of the normalisation. Most eRASS bins are empty.
    empty = counts == 0
    out = np.empty(source_counts.shape, np.float32)
    if empty.any():
        zero = np.exp(-(source_counts[empty] - source_counts[empty, :1]), dtype=np.float64)
        out[empty] = zero / zero.sum(axis=1, keepdims=True)
    full = ~empty
    if full.any():
        out[full] = _counted_likelihoods(counts[full], back_counts[full], backratio[full], source_counts[full])
    return out


def _counted_likelihoods(counts, back_counts, backratio, source_counts) -> np.ndarray:
    """:func:`bin_likelihoods` of bins with counts, by Gamma-quantile quadrature over the background."""
    u = (np.arange(N_BACKGROUND) + 0.5) / N_BACKGROUND
    background = (special.gammaincinv(back_counts[:, None] + 1.0, u[None, :]) * backratio[:, None]).astype(np.float32)  # (R, Q)
    expected = source_counts[:, :, None] + background[:, None, :]  # (R, G, Q)
    c = counts.astype(np.float32)[:, None, None]
    # log C! and the row's peak drop out of the normalisation below; subtracting the peak of
    # C log(mu) - mu (at mu = C) keeps float32 exp() from underflowing for bright bins
    peak = np.where(c > 0, c * np.log(np.maximum(c, 1.0)) - c, 0.0)
    log_pmf = c * np.log(expected) - expected - peak
    like = np.exp(log_pmf).mean(axis=2, dtype=np.float64)
    total = like.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, like / total, 1.0 / like.shape[1]).astype(np.float32)


def _kernels() -> np.ndarray:
    """Gaussian kernels integrated over each grid cell, between the mu points and the grid, (G, J*M).

    ``K[g, j, m] = Phi((g - m' + 1/2) / w_j) - Phi((g - m' - 1/2) / w_j)`` with ``w_j = 10**NU[j]``
    (sigma in grid steps) and ``m' = MU_STRIDE m``: the probability that a log rate drawn from
    N(mu, sigma) falls in cell ``g``. Integrating over the cell, rather than sampling the
    density at its centre, keeps the kernel normalised when sigma is narrower than a cell
    (sampled densities overweighted small sigma there and pulled the scatter of constant
    sources below the reference's).
    """
    g = np.arange(GRID)[:, None, None]
    m = np.arange(0, GRID, MU_STRIDE)[None, None, :]
    width = 10.0 ** NU[None, :, None]
    upper = special.ndtr((g - m + 0.5) / width)
    lower = special.ndtr((g - m - 0.5) / width)
    return (upper - lower).reshape(GRID, -1).astype(np.float32)


_KERNELS = _kernels()
_KERNELS_T = np.ascontiguousarray(_KERNELS.T)  # (J*M, G)
N_MU = len(range(0, GRID, MU_STRIDE))


def scatter_posterior(like: np.ndarray, source: np.ndarray, n_sources: int, step: np.ndarray,
                      mu_grid: np.ndarray) -> dict[str, np.ndarray]:
    """Posterior summaries of (mu, sigma) per source from its bins' grid likelihoods.

    Parameters
    ----------
    like : ndarray, shape (R, G)
        :func:`bin_likelihoods`.
    source : ndarray of int, shape (R,)
    step : ndarray, shape (S,)
        Each source's grid step (dex).
    mu_grid : ndarray, shape (S, M)
        The ``mu`` values (every second grid point).

    Returns
    -------
    dict of ndarray, shape (S,)
        ``bexvar_log_rate``, ``bexvar_scatt``, ``bexvar_scatt_lo``, ``bexvar_scatt_hi``,
        ``bexvar_pvar_p1``.
    """
    n_nu = len(NU)
    # (J*M, R): P(log rate of bin t in its cell | mu, sigma), summed over cells. Computed transposed:
    # BLAS runs this skinny product (inner size G) ~3x faster with the long dimension R as columns.
    log_terms = _KERNELS_T @ like.T
    log_terms += np.float32(1e-30)
    np.log(log_terms, out=log_terms)  # in place: this array is the largest of the computation
    # Sum each source's bins: along the contiguous rows when the bins come grouped by source (as a
    # store's batches do), else with a sparse (S, R) indicator product.
    starts = np.searchsorted(source, np.arange(n_sources))
    if np.all(np.diff(source) >= 0) and np.all(np.diff(starts) > 0):
        loglike = np.add.reduceat(log_terms, starts, axis=1).T.astype(np.float64).reshape(-1, n_nu, N_MU)
    else:
        members = sparse.csr_matrix((np.ones(len(source), np.float32), (source, np.arange(len(source)))),
                                    shape=(n_sources, len(source)))
        loglike = np.asarray(members @ log_terms.T, dtype=np.float64).reshape(-1, n_nu, N_MU)
    sigma = step[:, None] * 10.0 ** NU[None, :]  # (S, J) dex
    # The log-uniform prior on [0.01, 100] dex: each sigma cell (uniform in log sigma) weighs the
    # fraction of it inside the prior's support, so the posterior's edge at 0.01 dex (where a
    # constant source's posterior piles up) sits where the prior puts it.
    log_sigma = np.log10(sigma)
    half = (NU[1] - NU[0]) / 2.0
    lo_edge, hi_edge = np.log10(SIGMA_PRIOR[0]), np.log10(SIGMA_PRIOR[1])
    edges = np.clip(np.concatenate([log_sigma - half, log_sigma[:, -1:] + half], axis=1), lo_edge, hi_edge)
    weight = np.diff(edges, axis=1) / (2 * half)  # (S, J) in [0, 1]
    with np.errstate(divide="ignore"):
        loglike += np.log(weight)[:, :, None]
    loglike -= loglike.max(axis=(1, 2), keepdims=True)
    post = np.exp(loglike)
    post /= post.sum(axis=(1, 2), keepdims=True)
    p_sigma = post.sum(axis=2)  # (S, J)
    p_mu = post.sum(axis=1)  # (S, M)
    cdf = np.concatenate([np.zeros((n_sources, 1)), np.cumsum(p_sigma, axis=1)], axis=1)
    out = {"bexvar_log_rate": (p_mu * mu_grid).sum(axis=1)}
    for name, q in zip(("bexvar_scatt_lo", "bexvar_scatt", "bexvar_scatt_hi"), QUANTILES):
        out[name] = 10.0 ** np.array([np.interp(q, cdf[s], edges[s]) for s in range(n_sources)])
    out["bexvar_pvar_p1"] = np.array([1.0 - np.interp(-1.0, edges[s], cdf[s]) for s in range(n_sources)])
    return out


def bexvar(counts: np.ndarray, back_counts: np.ndarray, backratio: np.ndarray, fracexp: np.ndarray,
           timedel: np.ndarray, source: np.ndarray, n_sources: int, chunk_bins: int = 4096) -> dict[str, np.ndarray]:
    """Bayesian excess variance of one band for many light curves at once.

    Parameters
    ----------
    counts, back_counts, backratio, fracexp, timedel : ndarray, shape (R,)
        All bins of all sources (one band); bins with ``fracexp <= 0.1`` or non-finite values
        are left out here.
    source : ndarray of int, shape (R,)
        Source index of each bin, in ``range(n_sources)``.
    chunk_bins : int
        Bins per likelihood chunk (memory: chunk_bins x G x Q doubles).

    Returns
    -------
    dict of ndarray, shape (S,)
        The bexvar columns (module docstring), NaN for sources without bins; ``n_bins`` and
        ``net_counts`` (sum of ``C - B x BACKRATIO`` over the bins used).
    """
    counts = np.asarray(counts, "f8")
    back_counts = np.asarray(back_counts, "f8")
    backratio = np.asarray(backratio, "f8")
    conversion = np.asarray(fracexp, "f8") * np.asarray(timedel, "f8")
    # bins with FRACEXP at or below the ingest cut are left out, as the reference does per band
    keep = (np.asarray(fracexp) > FRACEXP_MIN) & np.isfinite(counts) & np.isfinite(back_counts) & np.isfinite(backratio) \
        & (counts >= 0) & (back_counts >= 0) & (backratio > 0) & np.isfinite(conversion)
    counts, back_counts, backratio, conversion = counts[keep], back_counts[keep], backratio[keep], conversion[keep]
    source = np.asarray(source)[keep]
    n_bins = np.bincount(source, minlength=n_sources)
    net_counts = np.bincount(source, weights=counts - back_counts * backratio, minlength=n_sources)
    has = np.flatnonzero(n_bins > 0)
    out = {name: np.full(n_sources, np.nan) for name in
           ("bexvar_log_rate", "bexvar_scatt", "bexvar_scatt_lo", "bexvar_scatt_hi", "bexvar_pvar_p1")}
    out["n_bins"] = n_bins
    out["net_counts"] = net_counts
    if not len(has):
        return out
    dense = np.full(n_sources, -1)
    dense[has] = np.arange(len(has))
    local = dense[source]
    start, stop = rate_grid(counts, back_counts, backratio, conversion, local, len(has))
    unit = np.linspace(0.0, 1.0, GRID)
    grids = start[:, None] + (stop - start)[:, None] * unit[None, :]  # (S', G)
    like = np.empty((len(counts), GRID), np.float32)
    for lo in range(0, len(counts), chunk_bins):
        hi = min(lo + chunk_bins, len(counts))
        like[lo:hi] = bin_likelihoods(counts[lo:hi], back_counts[lo:hi], backratio[lo:hi], conversion[lo:hi], grids[local[lo:hi]])
    summary = scatter_posterior(like, local, len(has), (stop - start) / (GRID - 1), grids[:, ::MU_STRIDE])
    for name, values in summary.items():
        out[name][has] = values
    return out
