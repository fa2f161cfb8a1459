"""Figures: benchmark reconstructions, loss curves, latent space (PCA) and worst-reconstructed sources.

Every function returns a :class:`matplotlib.figure.Figure` made without pyplot, so no GUI
backend is needed or switched (a library must leave the user's backend alone); callers save
it as PNG (:func:`save`) and hand the file to wandb.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

BAND_COLOURS = ("tab:red", "tab:green", "tab:blue", "tab:purple", "tab:orange", "tab:brown", "tab:pink", "tab:olive")


def band_colour(b: int) -> str:
    """Colour of band ``b`` (soft to hard: red, green, blue, then more)."""
    return BAND_COLOURS[b % len(BAND_COLOURS)]


def reconstruction_figure(records: list[dict], bands: list[str], title: str = "") -> Figure:
    """Input vs reconstruction for a few light curves, one row each, one column per band.

    Parameters
    ----------
    records : list of dict
        ``source_id``, ``time`` (T,) in days, ``rate``/``errm``/``errp`` (T, K) and
        ``recon`` (T, K) in ct/s, optional ``score``.
    bands : list of str
        K labels, one column each.
    """
    n = max(len(records), 1)
    k = max(len(bands), 1)
    height = 2.2 * n + 0.6
    fig = Figure(figsize=(3.7 * k + 0.5, height))
    axes = fig.subplots(n, k, squeeze=False, sharex="row")
    for i, (row, rec) in enumerate(zip(axes, records)):
        t = rec["time"]
        for b, ax in enumerate(row):
            ax.errorbar(t, rec["rate"][:, b], yerr=[rec["errm"][:, b], rec["errp"][:, b]], fmt="o", ms=3,
                        color=band_colour(b), alpha=0.8, lw=1, label="data")
            ax.plot(t, rec["recon"][:, b], "-", color="k", lw=1.5, label="VAE")
            ax.axhline(0, color="0.8", lw=0.5)
            if b == 0:
                label = rec["source_id"] + (f"\nscore {rec['score']:.3g}" if "score" in rec else "")
                ax.set_ylabel(f"{label}\nct/s", fontsize=7)
            if i == 0:
                ax.set_title(bands[b], fontsize=9)
            if i == n - 1:
                ax.set_xlabel("days since first bin")
            ax.tick_params(labelsize=7)
            ax.locator_params(nbins=4)  # fewer ticks: drawing them is most of a 48-panel figure's time
    axes[0, 0].legend(fontsize=7, loc="best")
    if title:
        fig.suptitle(title, fontsize=10, y=1 - 0.1 / height)
    # Fixed margins in inches, not tight_layout: measuring every tick label of a 16 x 3 grid took
    # ~3 s a figure, longer than a short training run's epochs.
    width = fig.get_figwidth()
    fig.subplots_adjust(left=1.1 / width, right=1 - 0.15 / width, bottom=0.55 / height,
                        top=1 - (0.75 if title else 0.45) / height, wspace=0.25, hspace=0.35)
    return fig


def loss_figure(history: list[dict]) -> Figure:
    """Train and validation loss per epoch (log scale)."""
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [h["train_loss"] for h in history], label="train")
    val = [(h["epoch"], h["val_loss"]) for h in history if h.get("val_loss") is not None]
    if val:
        ax.plot(*zip(*val), label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss per light curve (masked ELBO)")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    return fig


def pca(latents: np.ndarray, k: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Project (N, L) latents on their first ``k`` principal components.

    Returns
    -------
    projected : ndarray, shape (N, k)
    explained : ndarray, shape (k,)
        Fraction of variance per component.
    """
    centred = latents - latents.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    var = s**2
    return centred @ vt[:k].T, var[:k] / max(var.sum(), 1e-30)


def latent_figure(latents: np.ndarray, colour: np.ndarray, colour_label: str, categorical: bool = False) -> Figure:
    """PCA of the latent means, coloured by a score or by class."""
    xy, explained = pca(latents)
    fig = Figure(figsize=(6, 5))
    ax = fig.subplots()
    if categorical:
        for name in sorted({str(c) for c in colour}):
            sel = np.asarray([str(c) == name for c in colour])
            ax.scatter(xy[sel, 0], xy[sel, 1], s=6, alpha=0.6, label=f"{name} ({sel.sum()})")
        ax.legend(fontsize=8, markerscale=2)
    else:
        sc = ax.scatter(xy[:, 0], xy[:, 1], s=6, c=np.log10(np.maximum(colour, 1e-6)), cmap="viridis", alpha=0.7)
        fig.colorbar(sc, ax=ax, label=f"log10 {colour_label}")
    ax.set_xlabel(f"PC1 ({explained[0]:.0%})")
    ax.set_ylabel(f"PC2 ({explained[1]:.0%})")
    ax.set_title("VAE latent means")
    fig.tight_layout()
    return fig


def save(fig: Figure, path) -> None:
    """Write ``fig`` as PNG (matplotlib's Agg renderer, whatever the interactive backend)."""
    fig.savefig(path, dpi=110)
