"""Discovery benchmark: which ranking puts rare light-curve morphologies at the top, on archives never trained on?

    python benchmarks/discovery.py [--n 20000] [--variants 1 2] [--out /tmp/discovery-bench] [--config configs/discovery.toml]

1. Archives (``etl.synth --rare 0.01``): a training archive (seed 101) and test archives of ``--n``
   sources with 1 % rare morphologies (qpe, eclipse, absorption, step; 50 each at 20,000): the
   default generator (seed 202) and, for the spread, ``--variants`` other generators
   (``etl.synth --variant K``: every knob of the generator perturbed). Ingested, with the classical
   feature sets (``features.build``).
2. Models: the discovery GRU-VAE (``configs/discovery.toml``) trained on the training archive, and
   separately on the default test archive itself (unsupervised, as a survey would); the seed-style
   VAE (``--loss poisson``, 20 epochs, as the science check trains it) for today's VAE scores.
3. Rankings of every test archive: ``variable_fpp``; the seed VAE's ``anomaly_score`` and
   ``anomaly_fpp``; an isolation forest on the classical features, and on them plus the latents;
   ``discovery_score_classical`` (the ablation: no model input) and ``discovery_score``.
   Precision at 50 / 100 / 500 and average precision for the rare classes together, per class in
   the top 100, and what the rest of the top 100 is.
4. Active learning: ``features.active``'s AAD forest with an oracle answering from the truth
   (rare: interesting, else boring): rare sources found after 50 / 100 / 300 labels.
5. ``OUT/discovery.json``, ``OUT/top_ranked.png`` (the 12 highest discovery scores of the default
   test archive, with their true class) and the table printed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from archives import ROOT, ensure_checkpoint, ensure_store  # noqa: E402

from etl.morphology import COMMON_CLASSES, RARE_CLASSES  # noqa: E402
from features.active import ActiveRanker, feature_matrix, simulate_expert  # noqa: E402
from features.builders import build_morphology, build_poisson_variability, build_variability  # noqa: E402
from features.featurestore import get_feature_set, get_features  # noqa: E402

SHOWN = (50, 100, 500)


def model_sets(store: Path, ckpt: Path, n_null: int | None) -> dict[str, str]:
    """``{set: "name@version"}`` of a checkpoint's sets on ``store`` (built with training.score when missing)."""
    from training.score import build_model_features

    t = time.perf_counter()
    results = build_model_features(store, str(ckpt), progress=False, n_null=n_null)
    if any(created for _, created in results):
        print(f"  scored {store.name} with {ckpt.parent.parent.name}: {time.perf_counter() - t:.0f} s", flush=True)
    return {m["name"]: f"{m['name']}@{m['version']}" for m, _ in results}


def ranks(frame: pl.DataFrame, score: str, descending: bool = True) -> dict:
    """Precision at 50/100/500, average precision, per class and the rest of the top 100."""
    from sklearn.metrics import average_precision_score

    value = frame[score].cast(pl.Float64).fill_nan(None)
    filled = value.fill_null(value.min() - 1 if descending else value.max() + 1) if value.null_count() < len(value) else value.fill_null(0)
    s = filled.to_numpy() if descending else -filled.to_numpy()
    order = np.argsort(-s, kind="stable")
    classes = frame["class"].to_numpy()[order]
    rare = np.isin(classes, RARE_CLASSES)
    top = classes[:100]
    return {"top": {str(k): int(rare[:k].sum()) for k in SHOWN},
            "ap": float(average_precision_score(np.isin(frame["class"].to_numpy(), RARE_CLASSES), s)),
            "per_class": {c: int((top == c).sum()) for c in RARE_CLASSES},
            "rest": {c: int((top == c).sum()) for c in COMMON_CLASSES},
            "ap_per_class": {c: float(average_precision_score(frame["class"].to_numpy() == c, s)) for c in RARE_CLASSES}}


def isolation_forest(x: np.ndarray) -> np.ndarray:
    from sklearn.ensemble import IsolationForest

    return -IsolationForest(n_estimators=300, random_state=0).fit(x).score_samples(x)


def classical_matrix(frame: pl.DataFrame) -> np.ndarray:
    """Every numeric column of the classical sets (catalog bookkeeping left out), missing values at the median."""
    skip = {"offset", "n_points", "file_size", "n_rows_file", "_healpix_29", "ra", "dec", "t_start", "t_stop", "mjd_start",
            "mjd_stop", "mjdref", "pos_err_arcsec", "n_err_fallback", "net_counts_truth"}
    cols = [c for c, t in frame.schema.items() if t.is_numeric() and c not in skip and not c.startswith("mu_")]
    x = frame.select(cols).with_columns(pl.all().cast(pl.Float64).fill_nan(None))
    return x.with_columns(pl.all().fill_null(pl.all().median())).fill_null(0.0).to_numpy()


def evaluate(store: Path, truth: pl.DataFrame, sets: dict, seed_sets: dict | None) -> tuple[dict, pl.DataFrame]:
    """Every ranking of one test store (module docstring, step 3)."""
    names = ["variability", "poisson_variability", "morphology", sets["discovery"], sets["vae_latent"]]
    frame = get_features(store, names).collect().join(truth, on="source_id", how="inner")
    rows = {"variable_fpp (classical, calibrated)": ranks(frame, "variable_fpp", descending=False)}
    if seed_sets:
        seed = get_feature_set(store, seed_sets["vae_anomaly"])[1].collect().select("source_id", "anomaly_score", "anomaly_fpp")
        both = frame.join(seed, on="source_id", how="left")
        rows["seed VAE anomaly_score (raw)"] = ranks(both, "anomaly_score")
        rows["seed VAE anomaly_fpp"] = ranks(both, "anomaly_fpp", descending=False)
    classical = classical_matrix(frame.drop([c for c in frame.columns if c.startswith(("surprise", "discovery"))]))
    latents = frame.select(pl.col("^mu_\\d+$")).fill_null(0.0).to_numpy()
    rows["isolation forest, classical features"] = ranks(frame.with_columns(pl.Series("s", isolation_forest(classical))), "s")
    rows["isolation forest, classical + latents"] = ranks(
        frame.with_columns(pl.Series("s", isolation_forest(np.hstack([classical, latents])))), "s")
    rows["discovery_score_classical (ablation: no model)"] = ranks(frame, "discovery_score_classical")
    rows["discovery_score"] = ranks(frame, "discovery_score")
    return rows, frame


def active_curve(frame: pl.DataFrame, seeds: int, labels: list[int]) -> dict:
    """Rare sources found after ``labels`` labels (50/100/300 by default) by the AAD forest with an oracle (step 4)."""
    wanted = set(frame.filter(pl.col("class").is_in(list(RARE_CLASSES)))["source_id"].to_list())
    x, _ = feature_matrix(frame)
    curves = {}
    for feedback in (False, True):
        found = []
        for seed in range(seeds):
            ranker = ActiveRanker(frame["source_id"], x, "aad", seed)
            shown = simulate_expert(ranker, lambda s: "interesting" if s in wanted else "boring", max(labels), feedback)
            hits = np.cumsum([s in wanted for s in shown])
            found.append([int(hits[k - 1]) for k in labels])
        curves["feedback after every label" if feedback else "no feedback"] = dict(zip(map(str, labels), np.mean(found, 0).tolist()))
    return curves


def figure(frame: pl.DataFrame, store: Path, path: Path, n: int = 12) -> None:
    """The ``n`` highest discovery scores: light curve per band, with the true class."""
    from matplotlib.figure import Figure

    from etl.lightcurve import band_labels
    from etl.store import open_store

    st = open_store(store)
    top = frame.sort("discovery_score", descending=True, nulls_last=True).head(n)
    bands = band_labels(st.e_min, st.e_max)
    fig = Figure(figsize=(12, 1.9 * n / 3 + 1))
    axes = fig.subplots(-(-n // 3), 3, squeeze=False)
    colours = ("tab:red", "tab:green", "tab:blue")
    for ax, (sid, klass, score) in zip(axes.ravel(), top.select("source_id", "class", "discovery_score").iter_rows()):
        lc = st.read(sid)
        t = (lc.time - lc.time[0]) / 86400.0
        for k in range(lc.rate.shape[1]):
            ax.errorbar(t, lc.rate[:, k], yerr=[lc.rate_errm[:, k], lc.rate_errp[:, k]], fmt="o-", ms=2, lw=0.8,
                        color=colours[k % 3], label=bands[k])
        ax.set_title(f"{sid}  [{klass}]  score {score:.1f}", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0, 0].legend(fontsize=6)
    for ax in axes[-1]:
        ax.set_xlabel("days since first bin", fontsize=7)
    fig.suptitle("highest discovery_score on a test archive never trained on (true class in brackets)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def print_table(title: str, rows: dict) -> None:
    print(f"\n{title}")
    print(f"  {'ranking':48s} {'top 50':>6s} {'top 100':>7s} {'top 500':>7s} {'AP':>6s} | top 100: qpe / eclipse / absorption / step "
          f"| rest: constant / flare / dip / red noise")
    for name, r in rows.items():
        pc = " / ".join(str(r["per_class"][c]) for c in RARE_CLASSES)
        rest = " / ".join(str(r["rest"][c]) for c in COMMON_CLASSES)
        print(f"  {name:48s} {r['top']['50']:6d} {r['top']['100']:7d} {r['top']['500']:7d} {r['ap']:6.3f} | {pc:>22s} | {rest}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=20_000, help="sources per archive")
    p.add_argument("--rare", type=float, default=0.01)
    p.add_argument("--variants", type=int, nargs="*", default=[1, 2], help="other generators to test on (etl.synth --variant)")
    p.add_argument("--config", type=Path, default=ROOT / "configs" / "discovery.toml")
    p.add_argument("--epochs", type=int, default=None, help="override the config's epochs (quick runs)")
    p.add_argument("--seed-epochs", type=int, default=20, help="epochs of the seed-style VAE (0: leave it out)")
    p.add_argument("--null", type=int, default=None, help="simulated constants to calibrate on (default: features.build's)")
    p.add_argument("--active-seeds", type=int, default=2)
    p.add_argument("--labels", type=int, nargs="+", default=[50, 100, 300], help="active-learning curve: rare found after this many labels")
    p.add_argument("--out", type=Path, default=Path("/tmp/discovery-bench"))
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    extra = ["--epochs", str(args.epochs)] if args.epochs else []
    train_store = ensure_store(args.out, args.n, 101, "train", rare=args.rare)
    tests = {0: ensure_store(args.out, args.n, 202, "test", rare=args.rare)}
    tests |= {k: ensure_store(args.out, args.n, 300 + k, f"test-v{k}", rare=args.rare, variant=k) for k in args.variants}
    for store in tests.values():
        t = time.perf_counter()
        build_variability(store)
        build_poisson_variability(store, n_null=args.null)
        build_morphology(store, n_null=args.null)
        print(f"classical sets of {store.name}: {time.perf_counter() - t:.0f} s", flush=True)
    model = ensure_checkpoint(args.out / "run-discovery-train", train_store, ["--config", str(args.config), *extra], "discovery-train")
    own = ensure_checkpoint(args.out / "run-discovery-self", tests[0], ["--config", str(args.config), *extra], "discovery-self")
    seed_model = ensure_checkpoint(args.out / "run-seed-poisson", train_store,
                                   ["--loss", "poisson", "--epochs", str(args.seed_epochs), "--lr", "1e-3",
                                    "--plot-every", str(max(args.seed_epochs, 1))], "seed-poisson") if args.seed_epochs else None
    report = {"n": args.n, "rare": args.rare, "config": str(args.config), "archives": {}}
    for k, store in tests.items():
        truth = pl.read_parquet(store.parent / f"{store.stem}-archive" / "truth.parquet").filter(pl.col("expected") == "ok") \
            .select("source_id", "class", pl.col("net_counts").alias("net_counts_truth"))
        seed_sets = model_sets(store, seed_model, args.null) if seed_model else None
        for label, ckpt in ([("trained on another archive", model)] + ([("trained on this archive", own)] if k == 0 else [])):
            rows, frame = evaluate(store, truth, model_sets(store, ckpt, args.null), seed_sets)
            entry = {"rankings": rows, "n_rare": int(frame["class"].is_in(list(RARE_CLASSES)).sum())}
            if k == 0 and label.startswith("trained on another"):
                entry["active_learning"] = active_curve(frame, args.active_seeds, args.labels)
                figure(frame, store, args.out / "top_ranked.png")
                # what the data allow: rare sources whose variability is significant at all
                entry["rare_variable"] = {thr: int(frame.filter(pl.col("class").is_in(list(RARE_CLASSES))
                                                                & (pl.col("variable_fpp") < float(thr))).height)
                                          for thr in ("0.01", "0.1")}
            report["archives"][f"variant {k}, model {label}"] = entry
            print_table(f"generator variant {k} ({store.name}), discovery model {label}: {entry['n_rare']} rare of {frame.height}", rows)
            if "active_learning" in entry:
                print(f"  active learning (AAD forest, oracle from the truth): rare found after {', '.join(map(str, args.labels))} labels: "
                      + "; ".join(f"{name} {' / '.join(f'{v:.1f}' for v in c.values())}" for name, c in entry["active_learning"].items()))
                print(f"  rare sources with variable_fpp < 0.01 / 0.1: {entry['rare_variable']['0.01']} / {entry['rare_variable']['0.1']}")
    spread = [e["rankings"]["discovery_score"]["top"]["100"] for name, e in report["archives"].items() if "another" in name]
    ablation = [e["rankings"]["discovery_score_classical (ablation: no model)"]["top"]["100"]
                for name, e in report["archives"].items() if "another" in name]
    report["spread"] = {"discovery_top100": spread, "ablation_top100": ablation}
    print(f"\ndiscovery_score top 100 over generators {sorted(tests)}: {spread} (ablation {ablation})")
    (args.out / "discovery.json").write_text(json.dumps(report, indent=1))
    print(f"{args.out / 'discovery.json'}, {args.out / 'top_ranked.png'}")


if __name__ == "__main__":
    main()
