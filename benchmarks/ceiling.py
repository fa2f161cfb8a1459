"""What the data can tell: supervised rankings that bound what any unsupervised ranking can find.

Used by ``benchmarks/discovery.py``; supervised rankers, each given the truth as labels:

* :func:`out_of_fold`: gradient-boosted trees (scikit-learn's ``HistGradientBoostingClassifier``,
  Friedman 2001, with the histogram binning of LightGBM, Ke et al. 2017), and a logistic
  regression, on every feature set the project built, trained on rare against the rest; each
  source ranked by its out-of-fold probability of being rare under stratified 5-fold
  cross-validation (it is never scored by a model that saw its label).
* :class:`SupervisedGru`: the discovery model's encoder (the GRU and its mean head, started from
  the trained discovery checkpoint) with a classification head, trained with the truth on a
  separate labelled archive, the rare classes over-sampled, then applied to the test archive.
  It tests whether the feature sets lose information that the light curves hold.

Shape legend: B = batch, T = time steps, F = inputs per step, L = latent size, C = classes.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import polars as pl

from etl.catalog import OK_ROWS
from etl.morphology import CLASSES, RARE_CLASSES

RARE_INDEX = [CLASSES.index(c) for c in RARE_CLASSES]


def out_of_fold(x: np.ndarray, classes: np.ndarray, model: str = "gbm", folds: int = 5, seed: int = 0) -> np.ndarray:
    """(N,) out-of-fold probability of being rare from a supervised classifier of ``x`` (N, F).

    ``classes``: (N,) truth class names (``etl.morphology.CLASSES``); the classifier learns rare
    (any of ``RARE_CLASSES``) against the rest. ``model``: ``"gbm"``, gradient-boosted trees
    (200 trees of 15 leaves, learning rate 0.05; neither class weights nor early stopping, which
    both cost rare sources in the top 100 when tried: 19 and 23 against 23 on variant 0), or
    ``"logistic"``, an L2 logistic regression (C = 0.1) on the robustly standardised features
    (``features.feedback.standardise``, label-free). One binary model rather than one per
    class: the 8-class GBM took 10x longer and put 17 rare sources in its top 100.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    from features.feedback import standardise

    y = np.isin(classes, RARE_CLASSES).astype(int)
    if model == "logistic":
        x = standardise(x)
    proba = np.zeros(len(y))
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
        if model == "gbm":
            fitted = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, max_leaf_nodes=15, early_stopping=False,
                                                    random_state=seed)
        else:
            fitted = LogisticRegression(C=0.1, max_iter=2000)
        fitted.fit(x[train], y[train])
        proba[test] = fitted.predict_proba(x[test])[:, 1]
    return proba


def rare_probability(proba: np.ndarray) -> np.ndarray:
    """(N,) probability of any rare class from (N, C) class probabilities."""
    return proba[:, RARE_INDEX].sum(axis=1)


def _sources(store):
    """Every ok source of ``store`` in store order, as a ``training.data.SourceTable``."""
    from training.data import SourceTable

    ok = store.catalog().collect().filter(OK_ROWS).sort("offset")
    return SourceTable(ok["source_id"].to_list(), ok["offset"].to_numpy().astype(np.int64), ok["n_points"].to_numpy().astype(np.int64))


def _oversampled(sources, classes: np.ndarray, factor: int):
    """``sources`` with every rare source repeated ``factor`` times, and their class indices."""
    from training.data import SourceTable

    y = np.array([CLASSES.index(c) for c in classes])
    repeat = np.where(np.isin(y, RARE_INDEX), factor, 1)
    idx = np.repeat(np.arange(len(y)), repeat)
    return SourceTable([sources.source_ids[i] for i in idx], sources.offsets[idx], sources.lengths[idx]), y[idx]


class SupervisedGru:
    """The discovery model's encoder with a classification head, trained with the truth (:meth:`train`).

    ``run``: folder of its weights (``classifier.pt``, reused when present) and its record
    (``classifier.json``: seconds, epochs).
    """

    def __init__(self, checkpoint: Path, run: Path, seed: int = 0):
        import torch
        from torch import nn

        from training.model import load_model

        torch.manual_seed(seed)
        self.vae, self.cfg = load_model(str(checkpoint))
        self.head = nn.Sequential(nn.Linear(self.vae.latent, 64), nn.ReLU(), nn.Linear(64, len(CLASSES)))
        self.run, self.seed = run, seed
        self.weights = run / "classifier.pt"
        if self.weights.exists():
            state = torch.load(self.weights, weights_only=True)
            self.vae.load_state_dict(state["vae"])
            self.head.load_state_dict(state["head"])

    def logits(self, batch: dict):
        """(B, C) class logits from the encoder's mean (B, L) of the batch's ``x`` (B, T, F)."""
        from training.data import model_inputs

        x, lengths, cond, _ = model_inputs(batch, "cpu")
        mu, _ = self.vae.encode(x, lengths, cond)
        return self.head(mu)

    def _stream(self, store, sources, **options):
        from training.data import BucketedLightCurves, feature_options

        return BucketedLightCurves(store.url, sources, options.pop("batch_size", self.cfg.batch_size), self.cfg.max_len,
                                   self.cfg.target, store=store, **options, **feature_options(self.cfg))

    def train(self, store_path: Path, truth: pl.DataFrame, epochs: int = 20, oversample: int = 25, lr: float = 1e-3) -> dict:
        """Fit on ``store_path``'s ok sources with ``truth`` (``source_id``, ``class``); each rare source
        shown ``oversample`` times per epoch (1 % -> ~20 % of the batches). The record, from disk when trained before."""
        import json

        import torch
        from torch import nn

        from etl.store import open_store
        from training.data import SourceTable

        record = self.run / "classifier.json"
        if self.weights.exists() and record.exists():
            return json.loads(record.read_text())
        store = open_store(str(store_path))
        sources = _sources(store)
        classes = dict(truth.select("source_id", "class").iter_rows())
        keep = np.array([i for i, s in enumerate(sources.source_ids) if s in classes], dtype=np.int64)
        sources = SourceTable([sources.source_ids[i] for i in keep], sources.offsets[keep], sources.lengths[keep])
        table, y = _oversampled(sources, np.array([classes[s] for s in sources.source_ids]), oversample)
        ds = self._stream(store, table, seed=self.seed)
        params = [*self.vae.encoder.parameters(), *self.vae.to_mu.parameters(), *self.head.parameters()]
        optimiser = torch.optim.Adam(params, lr=lr)
        target = torch.from_numpy(y)
        started = time.perf_counter()
        self.vae.train()
        for epoch in range(epochs):
            ds.set_epoch(epoch)
            total = 0.0
            for batch in ds:
                loss = nn.functional.cross_entropy(self.logits(batch), target[batch["rows"]])
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                total += loss.item() * len(batch["rows"])
            print(f"  supervised GRU epoch {epoch + 1}/{epochs}: cross-entropy {total / len(table):.3f}", flush=True)
        self.vae.eval()
        self.run.mkdir(parents=True, exist_ok=True)
        torch.save({"vae": self.vae.state_dict(), "head": self.head.state_dict()}, self.weights)
        out = {"train_s": round(time.perf_counter() - started, 1), "epochs": epochs, "oversample": oversample,
               "light_curves_per_epoch": len(table)}
        record.write_text(json.dumps(out))
        print(f"  supervised GRU: {out['train_s']:.0f} s for {epochs} epochs of {len(table)} light curves", flush=True)
        return out

    def proba(self, store_path: Path) -> pl.DataFrame:
        """``source_id``, ``p_<class>`` per class and ``p_rare`` of every ok source of ``store_path``."""
        import torch

        from etl.store import open_store

        store = open_store(str(store_path))
        sources = _sources(store)
        ds = self._stream(store, sources, batch_size=256, shuffle=False)
        proba = np.zeros((len(sources), len(CLASSES)), dtype=np.float64)
        self.vae.eval()
        with torch.no_grad():
            for batch in ds:
                proba[batch["rows"].numpy()] = torch.softmax(self.logits(batch), dim=1).double().numpy()
        return pl.DataFrame({"source_id": sources.source_ids, **{f"p_{c}": proba[:, i] for i, c in enumerate(CLASSES)},
                             "p_rare": rare_probability(proba)})
