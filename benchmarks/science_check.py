"""Science check: does the GRU-VAE's anomaly score find variable sources, beyond reduced chi2?

    python benchmarks/science_check.py [--n 20000] [--epochs 30] [--out /tmp/science-check]

1. Train archive (seed 101) -> store -> ``training.fit`` for ``--epochs`` epochs.
2. A second labelled archive (seed 202, never trained on) -> store -> ``variability`` features
   and the model's ``vae_anomaly``/``vae_latent`` sets (``features.build --checkpoint``).
3. ROC AUC for telling variable (flare, dip, red noise) from constant sources with
   (a) reduced chi2 (the largest of the three bands, and the 0.6-2.3 keV band alone),
   (b) the VAE anomaly score, (c) both combined by a logistic regression on their logarithms,
   fitted and evaluated by 2-fold cross-validation on the test archive.
4. Figures and ``science_check.json`` in the run directory under ``--out``: latent PCA coloured
   by class, the 16 highest-scoring light curves.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, ensure_store  # noqa: E402
from etl.store import open_store  # noqa: E402
from features import get_features  # noqa: E402
from features.build import build_model_features, build_poisson_variability, build_variability  # noqa: E402


def roc_auc(score: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve (scikit-learn; ties count half)."""
    return float(roc_auc_score(positive, score))


def tpr_at_fpr(score: np.ndarray, positive: np.ndarray, fpr: float) -> float:
    """Fraction of positives above the threshold that a fraction ``fpr`` of the negatives exceed."""
    threshold = np.quantile(score[~positive], 1.0 - fpr, method="higher")
    return float(np.mean(score[positive] > threshold))


def cv_auc(x: np.ndarray, y: np.ndarray, seed: int = 0) -> float:
    """2-fold cross-validated AUC of a logistic regression on standardised ``x`` (scikit-learn)."""
    model = make_pipeline(StandardScaler(), LogisticRegression())
    folds = StratifiedKFold(n_splits=2, shuffle=True, random_state=seed)
    aucs = [roc_auc_score(y[test], model.fit(x[train], y[train]).decision_function(x[test])) for train, test in folds.split(x, y)]
    return float(np.mean(aucs))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=20_000)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--loss", choices=["mse", "chi2", "poisson"], default="mse", help="training loss (training.fit --loss)")
    p.add_argument("--out", type=Path, default=Path("/tmp/science-check"))
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    train_store = ensure_store(args.out, args.n, seed=101, name="train")
    test_store = ensure_store(args.out, args.n, seed=202, name="test")

    run = args.out / f"run-{args.epochs}ep" if args.loss == "mse" else args.out / f"run-{args.epochs}ep-{args.loss}"
    ckpt = run / "checkpoints" / "best.h5"
    if not ckpt.exists():
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "training.fit", "--store", str(train_store), "--epochs", str(args.epochs),
                        "--lr", str(args.lr), "--loss", args.loss, "--run-dir", str(run), "--wandb-mode", "disabled", "--no-progress",
                        "--plot-every", str(max(args.epochs // 3, 1))], check=True, cwd=ROOT)
        print(f"training: {args.epochs} epochs in {time.perf_counter() - t:.0f} s")
    build_variability(test_store)
    build_poisson_variability(test_store)
    # the versions built from this checkpoint (an earlier run's may be newer)
    versions = {meta["name"]: meta["version"] for meta, _ in build_model_features(test_store, str(ckpt), progress=False)}

    truth = pl.read_parquet(args.out / "test-archive" / "truth.parquet").select("source_id", "class")
    sets = ["variability", "poisson_variability", f"vae_anomaly@{versions['vae_anomaly']}", f"vae_latent@{versions['vae_latent']}"]
    df = get_features(test_store, sets).collect().join(truth, on="source_id")
    unscored = df.filter(pl.col("anomaly_score").is_null()).height  # fewer points than training's min_len
    df = df.filter(pl.col("anomaly_score").is_not_null())
    chi2_cols = [f"reduced_chi2_b{b}" for b in (1, 2, 3)]
    df = df.with_columns(pl.max_horizontal(chi2_cols).fill_null(1.0).alias("chi2_max"),
                         pl.col("reduced_chi2_b2").fill_null(1.0).alias("chi2_b2"))
    y = (df["class"] != "constant").to_numpy()
    chi2 = df["chi2_max"].to_numpy()
    score = df["anomaly_score"].to_numpy()
    vchi2 = df["anomaly_chi2"].fill_null(1.0).fill_nan(1.0).to_numpy()
    both = np.column_stack([np.log10(np.maximum(chi2, 1e-3)), np.log10(np.maximum(score, 1e-9)),
                            np.log10(np.maximum(vchi2, 1e-3))])
    def band_max(name: str) -> np.ndarray:
        return df.select(pl.max_horizontal([f"{name}_b{b}" for b in (1, 2, 3)]).fill_null(-1e9)).to_series().to_numpy()

    classical = {"AMPL_SIG (max over bands)": band_max("ampl_sig"), "NEV (max over bands)": band_max("nev"),
                 "bexvar SCATT_LO (max over bands)": band_max("bexvar_scatt_lo"), "reduced chi2 (max over bands)": chi2,
                 f"VAE anomaly score ({args.loss})": score, "VAE anomaly chi2": vchi2}
    at_fpr = {name: {f"{fpr:.2%}": tpr_at_fpr(values, y, fpr) for fpr in (0.0013, 0.01)} for name, values in classical.items()}
    table = {
        "AMPL_SIG (max over bands)": roc_auc(classical["AMPL_SIG (max over bands)"], y),
        "NEV (max over bands)": roc_auc(classical["NEV (max over bands)"], y),
        "bexvar SCATT_LO (max over bands)": roc_auc(classical["bexvar SCATT_LO (max over bands)"], y),
        "reduced chi2 (max over bands)": roc_auc(chi2, y),
        "reduced chi2 (0.6-2.3 keV)": roc_auc(df["chi2_b2"].to_numpy(), y),
        f"VAE anomaly score ({args.loss}, the training loss)": roc_auc(score, y),
        "VAE anomaly chi2 (error-weighted)": roc_auc(vchi2, y),
        f"combined chi2 + VAE {args.loss} (logistic, CV)": cv_auc(both[:, :2], y),
        "combined chi2 + VAE chi2 (logistic, CV)": cv_auc(both[:, [0, 2]], y),
        "combined all three (logistic, CV)": cv_auc(both, y),
        "chi2 alone (logistic, 2-fold CV)": cv_auc(both[:, :1], y),
    }
    per_class = {c: roc_auc(vchi2[(df["class"] == c).to_numpy() | ~y], y[(df["class"] == c).to_numpy() | ~y])
                 for c in ("flare", "dip", "red_noise")}
    per_class_chi2 = {c: roc_auc(chi2[(df["class"] == c).to_numpy() | ~y], y[(df["class"] == c).to_numpy() | ~y])
                      for c in ("flare", "dip", "red_noise")}
    print(f"\ntest archive: {df.height} sources ({y.sum()} variable, {(~y).sum()} constant; {unscored} single-point sources "
          f"left out); VAE trained {args.epochs} epochs, lr {args.lr}, loss {args.loss}")
    print(f"{'ROC AUC, variable vs constant':40s}")
    for k, v in table.items():
        print(f"  {k:44s} {v:.3f}")
    print("true-positive rate at a fixed false-positive rate (thresholds from this archive's constants):")
    for k, v in at_fpr.items():
        print(f"  {k:44s} " + "  ".join(f"TPR@{fpr} {rate:.3f}" for fpr, rate in v.items()))
    print("  per class (VAE chi2 / chi2 max): " + ", ".join(f"{c} {per_class[c]:.3f} / {per_class_chi2[c]:.3f}" for c in per_class))
    (run / "science_check.json").write_text(json.dumps({"auc": table, "tpr_at_fpr": at_fpr, "per_class_vae": per_class,
                                                            "per_class_chi2": per_class_chi2,
                                                            "epochs": args.epochs, "n_test": df.height}, indent=2))

    # figures (torch is fine here: this is a script, not the features package)
    import torch

    from training import plots
    from training.checkpoint import load_checkpoint, restore
    from training.config import config_from_dict
    from training.evaluate import reconstruct
    from training.model import build_model

    mu = df.select(pl.col("^mu_\\d+$")).to_numpy()
    plots.save(plots.latent_figure(mu, df["class"].to_numpy(), "class", categorical=True), run / "latent_pca_by_class.png")
    top = df.sort("anomaly_chi2", descending=True, nulls_last=True).head(16)
    ck = load_checkpoint(ckpt)
    cfg = config_from_dict(ck.config)
    store = open_store(test_store)
    model = build_model(cfg, len(store.e_min))
    restore(ck, model, rng=False)
    records = reconstruct(model, store, top["source_id"].to_list(), cfg.max_len, cfg.target, torch.device("cpu"), cfg.time_inputs)
    for rec, s, c in zip(records, top["anomaly_chi2"], top["class"]):
        rec["score"], rec["source_id"] = float(s), f"{rec['source_id']}\n[{c}]"
    plots.save(plots.reconstruction_figure(records, plots.band_labels(store.e_min, store.e_max), "16 highest VAE anomaly chi2 (test archive)"),
               run / "top16_anomalies.png")
    print(f"figures: {run / 'latent_pca_by_class.png'}, {run / 'top16_anomalies.png'}; top-16 classes: "
          f"{top['class'].value_counts().sort('class').rows()}")


if __name__ == "__main__":
    main()
