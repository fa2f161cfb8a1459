"""Length-bucketed streaming of light curves from the store into (B, T, F) tensors.

Shape legend: B = light curves in a batch, T = time steps (the batch's longest, capped at
``max_len``), K = energy bands of the store, F = features per step (3K: rate, rate_errm,
rate_errp of each band; 9 for eRASS1's three bands).

Scaling (decided here, documented in the README):

* every light curve is divided by one per-source scale

      s = max( mean_t sum_k rate[t, k],  sqrt( mean_t sum_k errp[t, k]^2 ),  1e-3 ct/s )

  i.e. the larger of the mean band-summed rate and the RMS over time of the band-summed
  rate's upper error (errors of independent bands add in quadrature). Both terms are about
  the same quantity, the band-summed rate, so they compare like with like; the error term
  keeps sources consistent with zero from blowing up. One number for all bands keeps hardness
  ratios. The model thus sees the *shape* of a light curve, not its brightness (brightness is
  in the catalog). Only valid steps with finite values count;
* inputs are ``asinh(value / s)``: linear near zero (background-subtracted rates may be
  negative), logarithmic for flares tens of times above the mean;
* the reconstruction target is the linear ``rate / s`` (or all 9 linear features with
  ``target = "all"``). The decoder's exp() output is a positive *true* rate; a negative
  measured rate is a noisy draw around a small positive one, and the MSE stays well defined;
* non-finite values (NaN rates of a band in srctool files) enter the input as 0 and are
  masked out of the loss via ``target_mask``; ``torch.where`` keeps them from ever reaching it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import torch
import xxhash
from torch.utils.data import IterableDataset, get_worker_info

from common.errors import UserError
from etl.catalog import OK_ROWS
from etl.lightcurve import ERODAY_S
from etl.poisson import padded_counts
from etl.store import LightCurveStore, open_store

#: Hash buckets of 10,000 per split: a source's split depends on its id only.
SPLITS = {"train": (0, 8500), "val": (8500, 9000), "test": (9000, 10000)}
RATE_FEATURES = ("rate", "rate_errm", "rate_errp")
#: What the Poisson loss needs besides the rates: counts and what turns a rate into counts.
COUNT_COLUMNS = ("counts", "back_counts", "backratio", "fracexp", "timedel")
#: Extra input features with ``time_inputs``: the gap since the previous bin and the exposure.
N_TIME_INPUTS = 2
SCALE_FLOOR = 1e-3


class DataError(UserError, ValueError):
    """The store cannot feed training (empty, no sources left after filtering...)."""


def split_of(source_ids: list[str]) -> np.ndarray:
    """Split name of each source id (stable: xxh64 of the id, 85/5/10)."""
    buckets = np.fromiter((xxhash.xxh64_intdigest(s.encode()) % 10_000 for s in source_ids), dtype=np.int64, count=len(source_ids))
    out = np.empty(len(source_ids), dtype=object)
    for name, (lo, hi) in SPLITS.items():
        out[(buckets >= lo) & (buckets < hi)] = name
    return out


@dataclass
class SourceTable:
    """The sources of one split: ids and where their points are."""

    source_ids: list[str]
    offsets: np.ndarray  # int64 (N,)
    lengths: np.ndarray  # int64 (N,) points in the store (uncapped)

    def __len__(self) -> int:
        return len(self.source_ids)


def select_splits(catalog: pl.DataFrame, limit: int = 0, seed: int = 0, min_len: int = 2) -> dict[str, SourceTable]:
    """Ok sources with at least ``min_len`` points, by split (each id hashed once).

    ``limit`` draws a seeded random sample of that many sources from the whole store first,
    then splits it, so that the three splits shrink together.
    """
    ok = catalog.filter(OK_ROWS & (pl.col("n_points") >= min_len)).sort("offset")
    if limit and limit < ok.height:
        keep = np.sort(np.random.default_rng(seed).choice(ok.height, limit, replace=False))
        ok = ok[keep]
    splits = split_of(ok["source_id"].to_list())
    tables = {}
    for name in SPLITS:
        part = ok.filter(pl.Series(splits == name))
        tables[name] = SourceTable(part["source_id"].to_list(), part["offset"].to_numpy().astype(np.int64),
                                   part["n_points"].to_numpy().astype(np.int64))
    return tables


def select_sources(catalog: pl.DataFrame, split: str, limit: int = 0, seed: int = 0, min_len: int = 2) -> SourceTable:
    """The sources of one split (see :func:`select_splits`)."""
    return select_splits(catalog, limit, seed, min_len)[split]


def make_batches(lengths: np.ndarray, batch_size: int, epoch: int, seed: int, shuffle: bool = True, world_size: int = 1) -> list[np.ndarray]:
    """Group sources of (nearly) equal length into batches, every source exactly once.

    Parameters
    ----------
    lengths : ndarray, shape (N,)
        Capped lengths.
    shuffle : bool
        Shuffle sources within equal lengths and the order of batches, from ``(seed, epoch)``.
    world_size : int
        The batch count is made a multiple of it (by splitting the largest batches), so that
        every DDP rank gets the same number of batches and none waits forever.

    Returns
    -------
    list of ndarray
        Row indices of each batch.
    """
    n = len(lengths)
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(n) if shuffle else np.arange(n)
    order = order[np.argsort(lengths[order], kind="stable")]
    batches = [order[i : i + batch_size] for i in range(0, n, batch_size)]
    missing = (-len(batches)) % world_size
    while missing:
        big = max(range(len(batches)), key=lambda i: len(batches[i]))
        if len(batches[big]) < 2:
            raise DataError(f"{n} sources cannot fill {world_size} ranks with one batch each")
        half = len(batches[big]) // 2
        batches[big : big + 1] = [batches[big][:half], batches[big][half:]]
        missing -= 1
    if shuffle:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def source_scale(rate: np.ndarray, errp: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-source scale ``s = max(mean_t sum_k rate, sqrt(mean_t sum_k errp^2), 1e-3)`` (module docstring).

    Parameters
    ----------
    rate, errp : ndarray, shape (B, T, K)
    mask : ndarray of bool, shape (B, T)
        Valid steps; the means run over them (non-finite values count as 0).

    Returns
    -------
    ndarray, shape (B,)
    """
    valid = mask[..., None] & np.isfinite(rate)
    steps = np.maximum(mask.sum(1), 1)
    mean_total = np.where(valid, rate, 0.0).sum(axis=(1, 2)) / steps
    err = np.where(mask[..., None] & np.isfinite(errp), errp, 0.0)
    rms_error = np.sqrt((err * err).sum(axis=(1, 2)) / steps)
    return np.maximum(np.maximum(mean_total, rms_error), SCALE_FLOOR).astype(np.float32)


def band_scales(rate: np.ndarray, errp: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-band scale ``s_k = max(mean_t rate_k, sqrt(mean_t errp_k^2), 1e-3 / K ct/s)``, (B, T, K) -> (B, K).

    The band version of :func:`source_scale`: each band is divided by its own scale, so the model
    sees every band's *relative* light curve (its shape), and gets the scales themselves as
    conditioning (:func:`features_from_batch`, ``band_scale``): brightness and mean spectrum are
    given, and the latents are free to carry shape and changes of spectrum.
    """
    valid = mask[..., None] & np.isfinite(rate)
    steps = np.maximum(mask.sum(1), 1)[:, None]
    mean = np.where(valid, rate, 0.0).sum(axis=1) / steps
    err = np.where(mask[..., None] & np.isfinite(errp), errp, 0.0)
    rms_error = np.sqrt((err * err).sum(axis=1) / steps)
    return np.maximum(np.maximum(mean, rms_error), SCALE_FLOOR / rate.shape[-1]).astype(np.float32)


#: Conditioning inputs are log10 of the band scales shifted by this (typical faint eRASS sources: ~0).
LOG_SCALE_OFFSET = 1.5


def read_columns(poisson: bool = False, time_inputs: bool = False) -> tuple[str, ...]:
    """Store columns :func:`features_from_batch` needs for these options."""
    return RATE_FEATURES + (COUNT_COLUMNS if poisson or time_inputs else ()) + (("time",) if time_inputs else ())


def features_from_batch(batch, max_len: int, target: str = "rates", poisson: bool = False,
                        time_inputs: bool = False, band_scale: bool = False) -> dict[str, np.ndarray]:
    """Turn a :class:`~etl.store.LightCurveBatch` into model arrays.

    Parameters
    ----------
    batch : LightCurveBatch
        Read with :func:`read_columns` of the same options.
    poisson : bool
        Add what the Poisson loss needs (``counts``, ``background``, ``exposure``).
    time_inputs : bool
        Append two inputs per step: ``asinh`` of the gap since the previous bin's start, in
        erodays (0 for the first bin), and ``asinh`` of the best band's exposure
        (FRACEXP x TIMEDEL) in units of 10 s. eRASS bins are not evenly spaced: this tells the
        encoder how far apart two measurements are and how much each is worth.
    band_scale : bool
        Scale each band by its own :func:`band_scales` instead of one scale for the source, and
        return them as conditioning ``cond`` (B, 2K): ``log10(s_k) + 1.5``, then a flag per band
        that is 1 while the band's values are among the inputs (:func:`hide_band` sets it to 0).

    Returns
    -------
    dict
        ``x`` (B, T, 3K [+2]) float32 inputs (rates of the K bands, then their lower errors,
        then their upper errors, then the time inputs); ``y`` (B, T, K or 3K) float32 targets;
        ``mask`` (B, T) bool valid steps; ``target_mask`` (B, T, K or 3K) bool valid and finite;
        ``lengths`` (B,) int64; ``scale`` (B,) float32, or (B, K) with ``band_scale`` (then also
        ``cond`` (B, 2K) float32); ``steps`` (B, T, 2) the time inputs alone, with ``time_inputs``;
        ``sigma`` (B, T, K) float32, the scaled
        symmetric rate error ``(errm + errp) / 2 / s`` (0 where unusable). With ``poisson``:
        ``counts`` (B, T, K) observed source-aperture counts, ``background`` (B, T, K) expected
        background counts in the aperture (BACK_COUNTS x BACKRATIO), ``exposure`` (B, T, K)
        seconds (TIMEDEL x FRACEXP) and ``count_mask`` (B, T, K) where all three are usable.
    """
    length = min(int(batch.lengths.max()), max_len)
    cols = [batch.padded(name, length=length, fill=np.nan)[0] for name in RATE_FEATURES]
    k = cols[0].shape[-1]
    mask = np.arange(cols[0].shape[1])[None, :] < np.minimum(batch.lengths, max_len)[:, None]
    if band_scale:
        scale = band_scales(cols[0], cols[2], mask)  # (B, K)
        values = np.concatenate(cols, axis=-1) / np.tile(scale, 3)[:, None, :]  # (B, T, 3K) each band by its own
    else:
        scale = source_scale(cols[0], cols[2], mask)
        values = np.concatenate(cols, axis=-1) / scale[:, None, None]  # (B, T, 3K) linear, scaled
    finite = np.isfinite(values) & mask[..., None]
    x = np.where(finite, np.arcsinh(np.where(finite, values, 0.0)), 0.0).astype(np.float32)
    y_all = np.where(finite, values, 0.0).astype(np.float32)
    width = output_width(k, target)
    errm, errp = slice(k, 2 * k), slice(2 * k, 3 * k)
    sigma = 0.5 * (values[..., errm] + values[..., errp])
    sigma = np.where(finite[..., errm] & finite[..., errp] & (sigma > 0), sigma, 0.0).astype(np.float32)
    out = {
        "sigma": sigma,
        "y": y_all[..., :width],
        "mask": mask,
        "target_mask": finite[..., :width],
        "lengths": np.minimum(batch.lengths, max_len).astype(np.int64),
        "scale": scale,
    }
    if band_scale:  # the band scales, then a flag per band: 1 = its values are among the inputs (hide_band)
        out["cond"] = np.concatenate([np.log10(scale) + LOG_SCALE_OFFSET, np.ones_like(scale)], axis=1).astype(np.float32)
    if poisson or time_inputs:
        counts, back, expo, usable = padded_counts(batch, length)  # (B, T, K), zero where not usable
    if poisson:
        out |= {"counts": counts.astype(np.float32), "background": back.astype(np.float32),
                "exposure": expo.astype(np.float32), "count_mask": usable}
    if time_inputs:
        time = batch.padded("time", length=length, fill=np.nan)[0]
        gap = np.zeros_like(time)
        gap[:, 1:] = np.diff(time, axis=1) / ERODAY_S
        best = expo.max(axis=2) / 10.0  # the best band's exposure, in units of a 10 s bin
        extra = np.stack([np.arcsinh(np.where(mask & np.isfinite(gap), gap, 0.0)),
                          np.arcsinh(np.where(mask, best, 0.0))], axis=-1).astype(np.float32)
        x = np.concatenate([x, extra], axis=-1)
        out["steps"] = extra
    out["x"] = x
    return out


def input_width(n_bands: int, time_inputs: bool = False) -> int:
    """F: rate, lower and upper error of each band (and the two time inputs)."""
    return len(RATE_FEATURES) * n_bands + (N_TIME_INPUTS if time_inputs else 0)


def hide_band(x: torch.Tensor, cond: torch.Tensor, band: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Hide one band of each light curve from the encoder: its rate and errors become 0, its flag 0.

    Parameters
    ----------
    x : Tensor, shape (B, T, F)
        Inputs of :func:`features_from_batch` (rates of the K bands, their lower errors, upper errors, ...).
    cond : Tensor, shape (B, 2K)
        Band scales and observed flags (``band_scale``).
    band : Tensor of int64, shape (B,)
        The band to hide per light curve, -1 for none.

    Returns
    -------
    x, cond : new tensors; the decoder still reconstructs every band, so a model trained with hidden
    bands learns to predict a band from the others (``hide_band`` of the config).
    """
    k = cond.shape[1] // 2
    rows = torch.nonzero(band >= 0).flatten()
    if not len(rows):
        return x, cond
    x, cond = x.clone(), cond.clone()
    b = band[rows]
    for group in range(len(RATE_FEATURES)):
        x[rows, :, group * k + b] = 0.0
    cond[rows, k + b] = 0.0
    return x, cond


def model_inputs(batch: dict, device) -> tuple:
    """``(x, lengths, cond, steps)`` of a batch on ``device`` (cond and steps None when the batch has none)."""
    get = batch.get
    return (batch["x"].to(device, non_blocking=True), batch["lengths"].to(device),
            None if get("cond") is None else batch["cond"].to(device), None if get("steps") is None else batch["steps"].to(device))


def output_width(n_bands: int, target: str) -> int:
    """O: the band rates (``target="rates"``) or all input features (``"all"``)."""
    return n_bands if target == "rates" else input_width(n_bands)


def feature_options(cfg) -> dict:
    """The options of :func:`features_from_batch` a training config implies."""
    return {"poisson": cfg.loss == "poisson", "time_inputs": cfg.time_inputs, "band_scale": cfg.condition == "band_mean"}


def conditioning_width(n_bands: int, condition: str) -> int:
    """C: the band scales and observed flags with ``condition = "band_mean"``, else 0."""
    return 2 * n_bands if condition == "band_mean" else 0


class BucketedLightCurves(IterableDataset):
    """Streams length-bucketed batches of one split from the store.

    Yields whole batches (use ``DataLoader(ds, batch_size=None)``): the tensors of
    :func:`features_from_batch` plus ``rows`` (B,) int64, indices into ``sources``.
    Batches are divided among DDP ranks (``rank::world_size``) and then among DataLoader
    workers (``worker::num_workers``), so no batch is read twice. The store is opened lazily
    in each process (Zarr's event-loop thread must not be forked; use the spawn context).
    Memory holds the source table and the reader's bounded chunk cache, nothing per epoch.
    """

    def __init__(self, store_url: str, sources: SourceTable, batch_size: int, max_len: int, target: str = "rates",
                 seed: int = 0, shuffle: bool = True, rank: int = 0, world_size: int = 1, cache_mib: int = 256,
                 storage_options: dict | None = None, poisson: bool = False, time_inputs: bool = False,
                 band_scale: bool = False, store: LightCurveStore | None = None):
        super().__init__()
        if len(sources) == 0:
            raise DataError(f"{store_url}: no sources in this split")
        self.store_url = store_url
        self.sources = sources
        self.capped = np.minimum(sources.lengths, max_len)
        self.batch_size, self.max_len, self.target = batch_size, max_len, target
        self.seed, self.shuffle = seed, shuffle
        self.rank, self.world_size = rank, world_size
        self.cache_mib = cache_mib
        self.storage_options = storage_options
        self.poisson, self.time_inputs, self.band_scale = poisson, time_inputs, band_scale
        self.epoch = 0
        self._batches: tuple[int, list[np.ndarray]] | None = None  # (epoch, this rank's batches)
        self._store: LightCurveStore | None = store  # an opened store to share in this process (not pickled)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_store"] = None  # each worker opens its own
        state["_batches"] = None
        return state

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose shuffle the next iteration uses."""
        self.epoch = epoch

    def rank_batches(self) -> list[np.ndarray]:
        """This rank's batches of the current epoch (all workers); made once per epoch."""
        if self._batches is None or self._batches[0] != self.epoch:
            batches = make_batches(self.capped, self.batch_size, self.epoch, self.seed, self.shuffle, self.world_size)
            self._batches = (self.epoch, batches[self.rank :: self.world_size])
        return self._batches[1]

    def __len__(self) -> int:
        return len(self.rank_batches())

    def padding_fraction(self) -> float:
        """Padded steps / all steps of this epoch's batches (all ranks)."""
        batches = make_batches(self.capped, self.batch_size, self.epoch, self.seed, self.shuffle, self.world_size)
        real = sum(int(self.capped[b].sum()) for b in batches)
        total = sum(int(self.capped[b].max()) * len(b) for b in batches)
        return 1.0 - real / total

    @property
    def store(self) -> LightCurveStore:
        if self._store is None:
            self._store = open_store(self.store_url, cache_bytes=self.cache_mib * 2**20, storage_options=self.storage_options)
        return self._store

    def load(self, rows: np.ndarray) -> dict[str, torch.Tensor]:
        """Read and featurise the sources at ``rows``."""
        batch = self.store.read_spans(self.sources.offsets[rows], self.sources.lengths[rows],
                                      read_columns(self.poisson, self.time_inputs))
        arrays = features_from_batch(batch, self.max_len, self.target, self.poisson, self.time_inputs, self.band_scale)
        out = {k: torch.from_numpy(v) for k, v in arrays.items()}
        out["rows"] = torch.from_numpy(np.asarray(rows, dtype=np.int64))
        return out

    def __iter__(self):
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        for rows in self.rank_batches()[worker::workers]:
            yield self.load(rows)
