"""Light-curve morphologies of the synthetic archives: the common variability classes and rare ones.

A morphology is a multiplicative rate profile ``m[t, k] >= 0`` per time bin and energy band (the
source's rate in band ``k`` at time ``t`` is its mean band rate times ``m[t, k]``), drawn with its
parameters from ranges held in :class:`MorphologyRanges`. The ranges are the generator's knobs:
:meth:`MorphologyRanges.variant` perturbs every one of them, so that a method can be checked on
archives drawn from many generators instead of tuned to one.

Common classes (all bands vary together, as the synthetic eRASS1 archives always had them):

* ``constant``;
* ``flare``: fast rise, exponential decay (peak factor, e-folding time in erodays);
* ``dip``: one box-shaped dip (depth, width in erodays);
* ``red_noise``: log-normal Ornstein-Uhlenbeck variability (sigma, correlation time).

Rare classes, after eROSITA's own discoveries (the ones a ranking should lift above the common
variables):

* ``qpe``: quasi-periodic eruptions, Gaussian bursts 10-100x the quiescent rate recurring every
  2.4 h to ~4 d with a full width at half maximum of 0.2-0.3 of the recurrence, evaluated at each
  bin's time, in the soft band only (a fraction of it in the second band, none in the hard band):
  Miniutti et al. 2019 (Nature 573, 381), Arcodia et al. 2021 (Nature 592, 704), 2024 (A&A 684,
  A64);
* ``eclipse``: periodic eclipses of a binary, period 1.5-10 h, width 0.1-0.2 of the period,
  depth 0.8-1 in all bands: the few scans that fall in an eclipse drop;
* ``absorption``: an episode of absorption, a contiguous stretch of scans in which the soft band
  drops (to 2-20 %; the second band less, as photo-electric absorption falls with energy) while the
  hard band stays: a hardness change, not a dip;
* ``step``: a turn-on or turn-off by a factor 5-20 that stays (a tidal disruption event rising
  between scans, a state change: Grotova et al. 2025).

Every profile comes with ``n_affected``: the bins in which it differs noticeably from quiescence
(a rare source whose eruptions or eclipses fall between scans is, honestly, unfindable).

Shape legend: T = time bins of one source, K = energy bands.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from etl.lightcurve import ERODAY_S

COMMON_CLASSES = ("constant", "flare", "dip", "red_noise")
RARE_CLASSES = ("qpe", "eclipse", "absorption", "step")
CLASSES = COMMON_CLASSES + RARE_CLASSES
HOUR_S = 3600.0


@dataclass(frozen=True)
class MorphologyRanges:
    """Parameter ranges of every class: (low, high), drawn uniformly or log-uniformly (``log_``)."""

    common_weights: tuple[float, ...] = (0.55, 0.15, 0.15, 0.15)  # constant, flare, dip, red_noise
    log_flare_amplitude: tuple[float, float] = (3.0, 20.0)  # peak factor above quiescence
    flare_tau_erodays: tuple[float, float] = (0.7, 3.0)
    dip_depth: tuple[float, float] = (0.7, 0.97)
    dip_width_erodays: tuple[float, float] = (1.0, 0.35)  # (minimum, maximum as a fraction of the span)
    red_noise_sigma: tuple[float, float] = (0.5, 1.1)
    red_noise_tau_erodays: tuple[float, float] = (1.5, 8.0)
    log_qpe_amplitude: tuple[float, float] = (10.0, 100.0)
    log_qpe_recurrence_h: tuple[float, float] = (2.4, 96.0)
    qpe_duty: tuple[float, float] = (0.2, 0.3)  # FWHM / recurrence
    qpe_second_band: tuple[float, float] = (0.0, 0.3)  # share of the soft amplitude seen in band 2
    eclipse_period_h: tuple[float, float] = (1.5, 10.0)
    eclipse_width: tuple[float, float] = (0.1, 0.2)  # of the period
    eclipse_depth: tuple[float, float] = (0.8, 1.0)
    log_absorption_soft: tuple[float, float] = (0.02, 0.2)  # what the soft band keeps
    absorption_duration: tuple[float, float] = (0.15, 0.5)  # of the span
    log_step_factor: tuple[float, float] = (5.0, 20.0)

    def variant(self, seed: int, spread: float = 0.35) -> "MorphologyRanges":
        """Another generator: every range moved and stretched by up to ``spread`` (relative, seeded).

        Ranges stay valid (ordered, fractions within [0, 1], factors above 1); the common classes'
        weights are redrawn around the defaults. ``seed`` 0 gives the defaults back.
        """
        if seed == 0:
            return self
        rng = np.random.default_rng([seed, 77])
        changes = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "common_weights":
                w = np.asarray(value) * np.exp(rng.uniform(-spread, spread, len(value)))
                changes[f.name] = tuple(float(x) for x in w / w.sum())
                continue
            lo, hi = value
            a, b = lo * np.exp(rng.uniform(-spread, spread)), hi * np.exp(rng.uniform(-spread, spread))
            lo, hi = min(a, b), max(a, b)
            if f.name in ("dip_depth", "eclipse_depth", "qpe_duty", "eclipse_width", "absorption_duration",
                          "qpe_second_band", "log_absorption_soft"):
                lo, hi = float(np.clip(lo, 0.01, 0.99)), float(np.clip(hi, 0.02, 1.0))
            if f.name.startswith("log_") and f.name != "log_absorption_soft":
                lo = max(lo, 1.5)
            changes[f.name] = (float(lo), float(max(hi, lo * 1.01)))
        return dataclasses.replace(self, **changes)


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(*bounds))


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(np.exp(rng.uniform(np.log(bounds[0]), np.log(bounds[1]))))


def profile(rng: np.random.Generator, klass: str, t_s: np.ndarray, n_bands: int = 3,
            ranges: MorphologyRanges = MorphologyRanges()) -> tuple[np.ndarray, dict]:
    """Multiplicative rate profile of one source and its parameters.

    Parameters
    ----------
    klass : str
        One of :data:`CLASSES`.
    t_s : ndarray, shape (T,)
        Bin times in seconds since the first bin.
    n_bands : int
        K; the rare classes' band behaviour assumes soft to hard order (band 1 softest).

    Returns
    -------
    m : ndarray, shape (T, K)
        Rate factor per bin and band (>= 0).
    params : dict
        The drawn parameters; always ``amplitude``, ``tau``, ``t0`` (class-specific meaning, NaN
        when unused) and ``n_affected`` (bins that differ noticeably from quiescence).
    """
    t_s = np.asarray(t_s, dtype="f8")
    t_ed = t_s / ERODAY_S
    span_ed = max(float(t_ed[-1]), 1.0)
    if klass in COMMON_CLASSES:
        m, params = _common(rng, klass, t_ed, span_ed, ranges)
        m = m[:, None] * np.ones((len(t_s), n_bands))
        params["n_affected"] = int(np.sum(np.abs(np.log(np.maximum(m[:, 0], 1e-9))) > np.log(1.5)))
        return m, params
    rare = {"qpe": _qpe, "eclipse": _eclipse, "absorption": _absorption, "step": _step}.get(klass)
    if rare is None:
        raise ValueError(f"unknown variability class {klass!r} (one of {', '.join(CLASSES)})")
    m, params, affected = rare(rng, t_s, t_ed, span_ed, n_bands, ranges)
    params["n_affected"] = int(np.sum(affected))
    return m, params


# The rare classes: each returns the profile (T, K), its parameters and the bins it affects (T,).
def _qpe(rng, t_s, t_ed, span_ed, n_bands, ranges):
    """Quasi-periodic eruptions: Gaussian bursts in the soft band (a fraction of it in the second)."""
    soft = np.zeros(n_bands)
    soft[0] = 1.0
    amp = _log_uniform(rng, ranges.log_qpe_amplitude)
    period = _log_uniform(rng, ranges.log_qpe_recurrence_h) * HOUR_S
    duty = _uniform(rng, ranges.qpe_duty)
    sigma = duty * period / 2.3548  # FWHM = duty x recurrence
    t0 = float(rng.uniform(0.0, period))
    phase = (t_s - t0 + 0.5 * period) % period - 0.5 * period  # time from the nearest eruption's peak
    burst = np.exp(-0.5 * (phase / sigma) ** 2)
    if n_bands > 1:
        soft[1] = _uniform(rng, ranges.qpe_second_band)
    m = 1.0 + amp * burst[:, None] * soft[None, :]
    params = {"amplitude": amp, "tau": duty * period / HOUR_S, "t0": t0 / HOUR_S, "period_h": period / HOUR_S,
              "second_band": float(soft[1]) if n_bands > 1 else 0.0}
    return m, params, amp * burst > 1.0


def _eclipse(rng, t_s, t_ed, span_ed, n_bands, ranges):
    """Eclipses: every band drops by the depth for a fraction of each period."""
    period = _uniform(rng, ranges.eclipse_period_h) * HOUR_S
    width = _uniform(rng, ranges.eclipse_width)
    depth = _uniform(rng, ranges.eclipse_depth)
    t0 = float(rng.uniform(0.0, period))
    inside = ((t_s - t0) % period) < width * period
    m = np.where(inside, 1.0 - depth, 1.0)[:, None] * np.ones((len(t_s), n_bands))
    return m, {"amplitude": depth, "tau": width * period / HOUR_S, "t0": t0 / HOUR_S, "period_h": period / HOUR_S}, inside


def _absorption(rng, t_s, t_ed, span_ed, n_bands, ranges):
    """An absorption episode: for a stretch of scans the soft band keeps a few per cent, the middle band more."""
    keep_soft = _log_uniform(rng, ranges.log_absorption_soft)
    duration = _uniform(rng, ranges.absorption_duration) * span_ed
    start = float(rng.uniform(0.0, max(span_ed - duration, 1e-9)))
    inside = (t_ed >= start) & (t_ed <= start + duration)
    if inside.sum() < 2:  # an episode spans at least two scans
        centre = int(rng.integers(0, len(t_ed)))
        inside[max(centre - 1, 0): centre + 1] = True
    factors = np.ones(n_bands)
    factors[0] = keep_soft
    if n_bands > 2:
        factors[1] = keep_soft ** 0.3  # absorption falls with energy: the middle band loses less
    m = np.where(inside[:, None], factors[None, :], 1.0)
    return m, {"amplitude": keep_soft, "tau": duration, "t0": start}, inside


def _step(rng, t_s, t_ed, span_ed, n_bands, ranges):
    """A turn-on or turn-off by a factor that stays."""
    factor = _log_uniform(rng, ranges.log_step_factor)
    turn_on = bool(rng.random() < 0.5)
    t0 = float(rng.uniform(0.25, 0.75)) * span_ed
    after = t_ed >= t0
    if after.all() or not after.any():  # the step falls between the first two or last two bins
        after = np.arange(len(t_ed)) >= max(1, len(t_ed) // 2)
    low = 1.0 / factor
    level = np.where(after, 1.0, low) if turn_on else np.where(after, low, 1.0)
    m = level[:, None] * np.ones((len(t_s), n_bands))
    return m, {"amplitude": factor, "tau": np.nan, "t0": t0, "turn_on": turn_on}, level < 1.0


def _common(rng: np.random.Generator, klass: str, t_ed: np.ndarray, span: float, ranges: MorphologyRanges
            ) -> tuple[np.ndarray, dict]:
    """The common classes' band-independent profile (T,) over time in erodays."""
    if klass == "constant":
        return np.ones_like(t_ed), {"amplitude": np.nan, "tau": np.nan, "t0": np.nan}
    if klass == "flare":
        amp = _log_uniform(rng, ranges.log_flare_amplitude)
        tau = _uniform(rng, ranges.flare_tau_erodays)
        t0 = float(rng.uniform(0.0, 0.7 * span))
        dt = t_ed - t0
        rise = np.exp(-0.5 * (dt / (0.25 * tau)) ** 2)
        decay = np.exp(-np.clip(dt, 0, None) / tau)
        return 1.0 + amp * np.where(dt < 0, rise, decay), {"amplitude": amp, "tau": tau, "t0": t0}
    if klass == "dip":
        depth = _uniform(rng, ranges.dip_depth)
        width = float(rng.uniform(ranges.dip_width_erodays[0], max(1.5, ranges.dip_width_erodays[1] * span)))
        t0 = float(rng.uniform(0.0, max(span - width, 0.5)))
        inside = (t_ed >= t0) & (t_ed <= t0 + width)
        if not inside.any():  # the dip is sampled at least once
            inside[rng.integers(0, len(t_ed))] = True
        return np.where(inside, 1.0 - depth, 1.0), {"amplitude": depth, "tau": width, "t0": t0}
    sigma = _uniform(rng, ranges.red_noise_sigma)
    tau = _uniform(rng, ranges.red_noise_tau_erodays)
    x = np.empty_like(t_ed)
    x[0] = rng.normal()
    for i, step in enumerate(np.diff(t_ed), start=1):
        phi = np.exp(-step / tau)
        x[i] = phi * x[i - 1] + np.sqrt(1 - phi * phi) * rng.normal()
    return np.exp(sigma * x - 0.5 * sigma * sigma), {"amplitude": sigma, "tau": tau, "t0": 0.0}
