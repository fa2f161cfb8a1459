"""How many CPU threads a training process uses: measured, not guessed.

The seed-size GRU-VAE (hidden 64, batch 32) runs a few thousand small tensor ops per batch.
Splitting each across many cores costs more in synchronisation than it saves, while large
batches or hidden sizes gain from more threads, and the answer moves with the load on the
machine: on a shared 2-core machine one thread trained 25 % faster than two at one time and
10 % slower at another. So, unless ``--threads`` says otherwise, training on the CPU times a
few real batches at 1, 2, 4, ... threads and keeps the fastest; the choice is written into
the run's config, so a resumed run uses the same number.

Shape legend: B = batch, T = time steps.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from torch import nn

from training.data import BucketedLightCurves, model_inputs
from training.model import batch_elbo


def thread_candidates(available: int) -> list[int]:
    """1, 2, 4, ... below ``available``, and ``available`` itself."""
    out, n = [], 1
    while n < available:
        out.append(n)
        n *= 2
    return out + [max(available, 1)]


def tune_threads(model: nn.Module, ds: BucketedLightCurves, kld_coef: float, loss: str = "mse", n_batches: int = 8,
                 rounds: int = 2, budget_s: float = math.inf) -> tuple[int, dict[int, float]]:
    """Time a training pass (forward, loss, backward) over a few batches at each thread count.

    Parameters
    ----------
    model : nn.Module
        The CPU model (``RNNVAE``); its weights are not changed, its gradients are cleared and
        the global torch RNG (dropout, reparameterisation) is restored afterwards.
    ds : BucketedLightCurves
        The training stream; ``n_batches`` of its current epoch's batches, spread over the
        epoch, are read (``x`` (B, T, F), ``lengths`` (B,), ...) and timed.
    kld_coef, loss : float, str
        As in training, so the timed work is the trained work.
    rounds : int
        Passes over the candidates; each candidate keeps its fastest pass (the machine may be shared).
    budget_s : float
        Stop timing once this many seconds have gone (reading the batches included); the
        candidates timed so far decide, and those never timed are left out of ``timings``.

    Returns
    -------
    int, dict
        The fastest thread count, now set with ``torch.set_num_threads``, and seconds per
        batch for each candidate (empty when there was only one).
    """
    available = torch.get_num_threads()
    candidates = thread_candidates(available)
    if len(candidates) == 1:
        return available, {}
    began = time.perf_counter()  # the budget counts from here, reading the batches included
    order = ds.rank_batches()
    picks = sorted({int(i) for i in np.linspace(0, len(order) - 1, min(n_batches, len(order)))})
    batches = [ds.load(order[i]) for i in picks]
    device = torch.device("cpu")
    rng, was_training = torch.get_rng_state(), model.training
    timings = {n: math.inf for n in candidates}

    def train_pass(batch: dict) -> None:
        recon, mu, logvar = model(*model_inputs(batch, device))
        batch_elbo(recon, mu, logvar, batch, device, kld_coef, loss)["loss"].backward()

    model.train()
    try:
        for _ in range(rounds):
            for n in candidates:
                if time.perf_counter() - began > budget_s and math.isfinite(timings[candidates[0]]):
                    break
                torch.set_num_threads(n)
                train_pass(batches[0])  # warm-up: thread pool start, allocator
                timed = time.perf_counter()
                for batch in batches:
                    train_pass(batch)
                timings[n] = min(timings[n], (time.perf_counter() - timed) / len(batches))
    finally:
        torch.set_rng_state(rng)
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    timings = {n: t for n, t in timings.items() if math.isfinite(t)}
    best = min(timings, key=timings.get)
    torch.set_num_threads(best)
    return best, timings
