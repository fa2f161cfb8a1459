"""Science check: which scores find injected variables at a catalogue's false-positive rates?

    python benchmarks/science_check.py [--n 20000] [--epochs 20] [--loss poisson chi2] [--out /tmp/science-check]

1. Train archive (seed 101) -> store -> ``training.fit`` for ``--epochs`` epochs per ``--loss``.
2. A second labelled archive (seed 202, never trained on) -> store -> ``variability``, the
   calibrated ``poisson_variability`` and each model's ``vae_anomaly`` (``features.build``).
3. For each score (reduced chi2; AMPL_SIG, NEV and bexvar SCATT_LO as calibrated FPPs, their
   combination; each VAE's calibrated anomaly FPP and raw score; classical + VAE as the smaller
   FPP; and logistic regressions on the classical scores alone and with the VAE's, out-of-fold
   by 2-fold cross-validation, so the VAE's contribution is the difference): ROC AUC and the
   true-positive rate at 0.13 % and 1 % false-positive rate (the thresholds that this archive's
   constant sources exceed that often), overall, per class and per net-count bin (the injected
   source counts: 10-30, 30-100, 100-1000, > 1000; the thresholds stay the global ones, as a
   catalogue's do).
4. The measured false-positive rate of every ``*variable_3sigma`` flag, with its binomial error:
   on the archive's constant sources, and on 20,000 simulated constants never used to build the
   tables (a second null sample, another seed, scored by the same tables and models; ``--check``).
5. In the run directory under ``--out``: ``science_check.json``, ``roc.png`` (ROC curves, log
   false-positive axis), ``vae_only.png`` (light curves the VAE flags and no classical statistic
   does), latent PCA by class.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parent))
from archives import ensure_checkpoint, ensure_store  # noqa: E402

from etl.store import open_store  # noqa: E402
from features import get_features  # noqa: E402
from features.builders import (  # noqa: E402
    build_poisson_variability,
    PartRunner,
    build_variability,
    null_lineage,
    null_store,
    total_net_counts,
    uncalibrated_poisson,
)
from features.calibration import FPP_3SIGMA, NullTable  # noqa: E402
from features.calibration import significance as calibrated_significance  # noqa: E402
from features.poisson_variability import STATISTICS, calibrate  # noqa: E402
from training.score import build_model_features, score_checkpoint  # noqa: E402

FPRS = (0.0013, 0.01)
COUNT_BINS = ((10, 30), (30, 100), (100, 1000), (1000, np.inf))
CLASSES = ("flare", "dip", "red_noise")
N_CHECK = 20_000


def tpr_at_fpr(score: np.ndarray, negative: np.ndarray, positive: np.ndarray, fpr: float) -> float:
    """Fraction of ``positive`` scores above the threshold that a fraction ``fpr`` of ``negative`` exceed."""
    threshold = np.quantile(negative, 1.0 - fpr, method="higher")
    return float(np.mean(positive > threshold)) if len(positive) else float("nan")


def significance(fpp: pl.Expr) -> pl.Expr:
    """:func:`features.calibration.significance`, floored at 1e-300 as this benchmark's figures were."""
    return calibrated_significance(fpp, floor=1e-300)


def binomial(k: int, n: int) -> dict:
    return {"flagged": k, "n": n, "rate": k / n if n else float("nan"), "error": float(np.sqrt(max(k, 1)) / n) if n else float("nan")}


def train(args, loss: str, train_store: Path) -> Path:
    return ensure_checkpoint(args.out / f"run-{args.epochs}ep-{loss}", train_store,
                             ["--epochs", str(args.epochs), "--lr", str(args.lr), "--loss", loss,
                              "--plot-every", str(max(args.epochs // 3, 1))], f"({loss}), {args.epochs} epochs")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=20_000)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--loss", nargs="+", choices=["mse", "chi2", "poisson"], default=["poisson", "chi2"],
                   help="training losses, one model each (training.fit --loss)")
    p.add_argument("--null", type=int, default=None, help="simulated constants to calibrate on (default: features.build's)")
    p.add_argument("--check", type=int, default=N_CHECK, help="fresh simulated constants for the flags' false-positive rates")
    p.add_argument("--out", type=Path, default=Path("/tmp/science-check"))
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    train_store = ensure_store(args.out, args.n, seed=101, name="train")
    test_store = ensure_store(args.out, args.n, seed=202, name="test")
    checkpoints = {loss: train(args, loss, train_store) for loss in args.loss}

    t = time.perf_counter()
    build_variability(test_store)
    poisson_meta, _ = build_poisson_variability(test_store, progress=True, n_null=args.null)
    print(f"poisson_variability with its calibration: {time.perf_counter() - t:.0f} s")
    sets = ["variability", f"poisson_variability@{poisson_meta['version']}"]
    df = get_features(test_store, sets).collect()
    vae_cols = {}
    for loss, ckpt in checkpoints.items():
        meta = {m["name"]: m for m, _ in build_model_features(test_store, str(ckpt), progress=False, n_null=args.null)}["vae_anomaly"]
        vae = get_features(test_store, [f"vae_anomaly@{meta['version']}"], catalog_columns=[]).collect()
        vae_cols[loss] = {"fpp": f"anomaly_fpp_{loss}", "flag": f"vae_variable_3sigma_{loss}", "score": f"anomaly_score_{loss}"}
        df = df.join(vae.select("source_id", pl.col("anomaly_fpp").alias(vae_cols[loss]["fpp"]),
                                pl.col("vae_variable_3sigma").alias(vae_cols[loss]["flag"]),
                                pl.col("anomaly_score").alias(vae_cols[loss]["score"])), on="source_id", how="left")
    truth = pl.read_parquet(args.out / "test-archive" / "truth.parquet").select("source_id", "class", "net_counts")
    df = df.join(truth, on="source_id").with_columns(
        pl.max_horizontal([f"reduced_chi2_b{b}" for b in (1, 2, 3)]).fill_null(1.0).alias("chi2_max"))
    best_vae = args.loss[0]
    vae_fpp = pl.col(vae_cols[best_vae]["fpp"])
    scores = {
        "reduced chi2 (max over bands)": pl.col("chi2_max"),
        "AMPL_SIG (FPP, best band)": significance(pl.col("ampl_sig_fpp")),
        "NEV (FPP, best band)": significance(pl.col("nev_fpp")),
        "bexvar SCATT_LO (FPP, best band)": significance(pl.col("bexvar_fpp")),
        "classical combined (variable_fpp)": significance(pl.col("variable_fpp")),
        **{f"VAE --loss {loss} (anomaly_fpp)": significance(pl.col(c["fpp"])) for loss, c in vae_cols.items()},
        f"classical + VAE {best_vae} (smaller FPP)": significance(pl.min_horizontal(pl.col("variable_fpp").fill_null(1.0), vae_fpp.fill_null(1.0))),
    }
    raw = {f"VAE --loss {loss} (raw anomaly_score)": pl.col(c["score"]).fill_null(0.0) for loss, c in vae_cols.items()}
    frame = df.select("source_id", "class", "net_counts", *[expr.alias(name) for name, expr in (scores | raw).items()])
    y = (frame["class"] != "constant").to_numpy()
    classical = ["reduced chi2 (max over bands)", "AMPL_SIG (FPP, best band)", "NEV (FPP, best band)",
                 "bexvar SCATT_LO (FPP, best band)", "classical combined (variable_fpp)"]
    logistic = {"logistic on the classical scores (2-fold CV)": classical,
                "logistic on classical + VAE scores (2-fold CV)": [*scores, *raw]}
    for name, columns in logistic.items():  # out-of-fold decision values: no source is scored by a model that saw it
        x = frame.select(columns).with_columns(pl.col("reduced chi2 (max over bands)").clip(1e-3).log10())
        x = x.with_columns(pl.col(c).clip(1e-9).log10() for c in columns if c in raw).to_numpy()
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        oof = cross_val_predict(model, x, y, cv=StratifiedKFold(2, shuffle=True, random_state=0), method="decision_function")
        frame = frame.with_columns(pl.Series(name, oof))
    names = [*scores, *raw, *logistic]

    classes = frame["class"].to_numpy()
    net = frame["net_counts"].to_numpy()
    report = {"n_test": frame.height, "n_variable": int(y.sum()), "n_constant": int((~y).sum()), "epochs": args.epochs,
              "losses": args.loss, "scores": {}}
    for name in names:
        s = frame[name].to_numpy()
        neg, pos = s[~y], s[y]
        entry = {"auc": float(roc_auc_score(y, s)), "tpr": {f"{f:.2%}": tpr_at_fpr(s, neg, pos, f) for f in FPRS},
                 "per_class": {c: {f"{f:.2%}": tpr_at_fpr(s, neg, s[classes == c], f) for f in FPRS} | {
                     "auc": float(roc_auc_score(np.r_[np.zeros(len(neg)), np.ones((classes == c).sum())], np.r_[neg, s[classes == c]]))}
                     for c in CLASSES},
                 "per_counts": {}}
        for lo, hi in COUNT_BINS:
            sel = y & (net >= lo) & (net < hi)
            entry["per_counts"][f"{lo}-{hi}"] = {"n_variable": int(sel.sum())} | {f"{f:.2%}": tpr_at_fpr(s, neg, s[sel], f) for f in FPRS}
        report["scores"][name] = entry

    # measured false-positive rates of the flags: the archive's constants and a fresh null sample
    flags = [f"{stat}_variable_3sigma" for stat in STATISTICS] + ["variable_3sigma"] + [c["flag"] for c in vae_cols.values()]
    constants = df.filter(pl.col("class") == "constant")
    report["flags"] = {}
    for flag in flags:
        report["flags"][flag] = {"constants": binomial(int(constants[flag].fill_null(False).sum()), constants.height),
                                 "tpr": float(df.filter(pl.col("class") != "constant")[flag].fill_null(False).mean()),
                                 "tpr_per_class": {c: float(df.filter(pl.col("class") == c)[flag].fill_null(False).mean()) for c in CLASSES}}
    store = open_store(test_store)
    null = null_lineage(store, args.null, 0)
    tables = uncalibrated_poisson(null_store(store, null))
    check_store = null_store(store, null_lineage(store, args.check, 7), progress=True)
    check = calibrate(uncalibrated_poisson(check_store, PartRunner(progress=True)), tables, len(store.e_min))
    for flag in [f"{stat}_variable_3sigma" for stat in STATISTICS] + ["variable_3sigma"]:
        report["flags"][flag]["fresh_null"] = binomial(int(check[flag].sum()), check.height)
    constants_null = null_store(store, null)
    check_net = total_net_counts(check)
    for loss, ckpt in checkpoints.items():
        ref = score_checkpoint(constants_null, str(ckpt.resolve()))[0].join(
            total_net_counts(tables), on="source_id")
        table = NullTable.build(ref["anomaly_score"].to_numpy(), ref["net_counts"].to_numpy(), ref["n_steps"].to_numpy())
        fresh = score_checkpoint(check_store, str(ckpt.resolve()))[0].join(check_net, on="source_id")
        fpp = table.fpp(fresh["anomaly_score"].to_numpy(), fresh["net_counts"].to_numpy(), fresh["n_steps"].to_numpy())
        report["flags"][vae_cols[loss]["flag"]]["fresh_null"] = binomial(int(np.sum(np.nan_to_num(fpp, nan=1.0) <= FPP_3SIGMA)), len(fpp))

    run = args.out / f"report-{args.epochs}ep"
    run.mkdir(exist_ok=True)
    (run / "science_check.json").write_text(json.dumps(report, indent=2))
    print_report(report, names)
    figures(args, run, frame, names, y, df, vae_cols, checkpoints, test_store)


def print_report(report: dict, names: list[str]) -> None:
    print(f"\ntest archive: {report['n_test']} sources ({report['n_variable']} variable, {report['n_constant']} constant), "
          f"never trained on; VAEs trained {report['epochs']} epochs ({', '.join(report['losses'])})")
    print(f"{'score':44s} {'AUC':>6s} {'TPR@0.13%':>10s} {'TPR@1%':>8s} | TPR@0.13% flare / dip / red noise | "
          + " / ".join(f"{lo}-{hi:g}" for lo, hi in COUNT_BINS))
    for name in names:
        e = report["scores"][name]
        pc = " / ".join(f"{e['per_class'][c]['0.13%']:.3f}" for c in CLASSES)
        pn = " / ".join(f"{v['0.13%']:.3f}" for v in e["per_counts"].values())
        print(f"{name:44s} {e['auc']:6.3f} {e['tpr']['0.13%']:10.3f} {e['tpr']['1.00%']:8.3f} | {pc} | {pn}")
    print("variables per count bin: " + ", ".join(f"{k}: {v['n_variable']}" for k, v in report["scores"][names[0]]["per_counts"].items()))
    print(f"\nflags at FPP <= {FPP_3SIGMA:.3%}: measured false-positive rate (constants of the archive; fresh simulated constants) and TPR")
    for flag, e in report["flags"].items():
        c, f = e["constants"], e.get("fresh_null", {})
        print(f"  {flag:32s} {c['rate']:.3%} +- {c['error']:.3%} ({c['flagged']}/{c['n']});  "
              f"{f.get('rate', float('nan')):.3%} +- {f.get('error', float('nan')):.3%} ({f.get('flagged')}/{f.get('n')});  TPR {e['tpr']:.3f}")


def figures(args, run: Path, frame: pl.DataFrame, names: list[str], y: np.ndarray, df: pl.DataFrame, vae_cols: dict,
            checkpoints: dict, test_store: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5.5))
    for name in names:
        fpr, tpr, _ = roc_curve(y, frame[name].to_numpy())
        ax.plot(np.maximum(fpr, 1e-5), tpr, label=name, lw=1.4 if "VAE" in name else 1.0, ls="--" if "VAE" in name else "-")
    for f in FPRS:
        ax.axvline(f, color="grey", lw=0.6, ls=":")
    ax.set(xscale="log", xlim=(1e-4, 1), ylim=(0, 1), xlabel="false-positive rate (constant sources)",
           ylabel="true-positive rate (flare, dip, red noise)", title=f"ROC, {frame.height} test sources never trained on")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(run / "roc.png", dpi=120)
    plt.close(fig)

    import torch

    from etl.lightcurve import band_labels
    from training import plots
    from training.checkpoint import load_checkpoint, restore
    from training.config import config_from_dict
    from training.evaluate import reconstruct
    from training.model import build_model

    loss = args.loss[0]
    flag, fpp = vae_cols[loss]["flag"], vae_cols[loss]["fpp"]
    vae_only = df.filter(pl.col(flag) & ~pl.col("variable_3sigma"))
    title = f"VAE ({loss}) flags at 3 sigma, no classical statistic does: {vae_only.height} sources"
    if vae_only.height == 0:
        vae_only = df.filter(~pl.col("variable_3sigma"))
        title = f"none flagged by the VAE ({loss}) alone; the 16 lowest VAE FPPs without a classical flag"
    top = vae_only.sort(fpp, nulls_last=True).head(16)
    ck = load_checkpoint(checkpoints[loss])
    cfg = config_from_dict(ck.config)
    store = open_store(test_store)
    model = build_model(cfg, len(store.e_min))
    restore(ck, model, rng=False)
    records = reconstruct(model, store, top["source_id"].to_list(), cfg, torch.device("cpu"))
    for rec, p, c, n in zip(records, top[fpp], top["class"], top["net_counts"]):
        rec["score"], rec["source_id"] = float(p), f"{rec['source_id']}\n[{c}, {n:.0f} ct, FPP {p:.1e}]"
    plots.save(plots.reconstruction_figure(records, band_labels(store.e_min, store.e_max), title), run / "vae_only.png")
    mu = get_features(test_store, ["vae_latent"]).collect().join(df.select("source_id", "class"), on="source_id").drop_nulls("mu_0")
    plots.save(plots.latent_figure(mu.select(pl.col("^mu_\\d+$")).to_numpy(), mu["class"].to_numpy(), "class", categorical=True),
               run / "latent_pca_by_class.png")
    print(f"\nfigures: {run / 'roc.png'}, {run / 'vae_only.png'} ({title}); classes there: "
          f"{top['class'].value_counts().sort('class').rows()}")


if __name__ == "__main__":
    main()
