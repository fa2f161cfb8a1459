"""Discovery benchmark: which ranking puts rare light-curve morphologies at the top, on archives never trained on?

    python benchmarks/discovery.py [--n 20000] [--variants 1 2] [--out /tmp/discovery-bench] [--config configs/discovery.toml]
                                   [--labels 10 30 100] [--gru-epochs 20]

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
4. The ceiling (``benchmarks/ceiling.py``): what supervised rankings given the truth find in the
   same top 100. Out-of-fold (stratified 5-fold) probabilities of gradient-boosted trees on every
   set and the latents and on the classical sets alone, and of a logistic regression on every
   set; and a GRU classifier (the discovery model's encoder with a classification head, rare
   classes over-sampled 25x) trained on the labelled training archive and applied to each test
   archive. The ceiling is the best of them, overall and per class; every ranking gets its
   fraction of it.
5. A simulated user (an oracle from the truth: rare is interesting, else boring) labels the
   current top candidate, the ranking re-fitted after each label: after 10 / 30 / 100 labels
   (``--labels``), the rare sources among the labelled and among the labelled plus the next 100
   shown. The label-driven ranking (``features.feedback``, from ``discovery_score``, every set
   and the latents), the AAD forest (``features.active``) and no feedback (``discovery_score``'s order).
6. ``OUT/discovery.json``, ``OUT/top_ranked.png`` (the 12 highest discovery scores of the default
   test archive, with their true class), ``OUT/label_curve.png`` (step 5) and the tables printed.
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
from ceiling import SupervisedGru, out_of_fold  # noqa: E402

from etl.morphology import COMMON_CLASSES, RARE_CLASSES  # noqa: E402
from features.active import ActiveRanker, feature_matrix, simulate_expert  # noqa: E402
from features.builders import build_morphology, build_poisson_variability, build_variability  # noqa: E402
from features.featurestore import get_feature_set, get_features  # noqa: E402
from features.feedback import LabelRanker, Ranking  # noqa: E402

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


def shown_curve(ranker: Ranking, wanted: set[str], labels: list[int], then: int = 100) -> dict:
    """A simulated user (``features.active.simulate_expert``; rare: interesting, else boring) labels the
    current top candidate, re-ranking after each label; after each count in ``labels``: rare sources
    among the labelled, and among the labelled plus the next ``then`` the ranking shows (step 5)."""
    out = {}

    def look(shown: list[str]) -> None:
        if len(shown) in labels:
            after = shown + ranker.next(then)
            out[str(len(shown))] = {"labelled": sum(s in wanted for s in shown),
                                    f"labelled + next {then}": sum(s in wanted for s in after)}

    simulate_expert(ranker, lambda s: "interesting" if s in wanted else "boring", max(labels), after=look)
    return out


def label_curves(frame: pl.DataFrame, seeds: int, labels: list[int], then: int = 100) -> dict:
    """Rare sources found with a simulated user: the label-driven ranking (``features.feedback``), the AAD
    forest (mean of ``seeds``) and no feedback (``discovery_score``'s top ``labels + then``), over every
    set and the latents (step 5)."""
    wanted = set(frame.filter(pl.col("class").is_in(list(RARE_CLASSES)))["source_id"].to_list())
    x, _ = feature_matrix(frame)
    order = frame.sort("discovery_score", descending=True, nulls_last=True)["source_id"].to_list()
    curves = {"no feedback (discovery_score)": {str(k): {"labelled": sum(s in wanted for s in order[:k]),
                                                          f"labelled + next {then}": sum(s in wanted for s in order[: k + then])}
                                                 for k in labels}}
    t = time.perf_counter()
    curves["label-driven (features.feedback, prior discovery_score)"] = shown_curve(
        LabelRanker(frame["source_id"], x, frame["discovery_score"].to_numpy()), wanted, labels, then)
    learn_s = (time.perf_counter() - t) / max(labels)
    runs = [shown_curve(ActiveRanker(frame["source_id"], x, "aad", seed), wanted, labels, then) for seed in range(seeds)]
    curves[f"AAD forest (mean of {seeds} seeds)"] = {k: {m: float(np.mean([r[k][m] for r in runs])) for m in runs[0][k]} for k in runs[0]}
    curves["seconds per label (label-driven, re-fit and next)"] = round(learn_s, 3)
    return curves


def supervised_rows(frame: pl.DataFrame, gru: pl.DataFrame | None) -> dict:
    """The ceiling's rankings of one test archive (``frame``: every set joined, with the truth): the
    gradient-boosted trees out of fold on every set and on the classical sets, a logistic regression
    out of fold on every set, and the supervised GRU."""
    latents = frame.select(pl.col("^mu_\\d+$")).fill_null(0.0).to_numpy()
    everything = np.hstack([classical_matrix(frame.drop("discovery_reason", strict=False)), latents])
    classical = classical_matrix(frame.drop([c for c in frame.columns if c.startswith(("surprise", "discovery"))]))
    classes = frame["class"].to_numpy()
    rows = {}
    for name, x, model in (("supervised GBM, every set + latents (5-fold out-of-fold)", everything, "gbm"),
                           ("supervised GBM, classical sets only", classical, "gbm"),
                           ("supervised logistic regression, every set + latents", everything, "logistic")):
        t = time.perf_counter()
        p = out_of_fold(x, classes, model)
        rows[name] = ranks(frame.with_columns(pl.Series("s", p)), "s") | {"seconds": round(time.perf_counter() - t, 1)}
    if gru is not None:
        rows["supervised GRU on the light curves (trained on another archive)"] = ranks(frame.join(gru, on="source_id", how="left"), "p_rare")
    return rows


def ceiling_of(supervised: dict) -> dict:
    """The ceiling: rare in the top 100 of the best supervised ranking, overall and per class (the best
    per class may come from different rankings)."""
    return {"top100": max(r["top"]["100"] for r in supervised.values()),
            "per_class": {c: max(r["per_class"][c] for r in supervised.values()) for c in RARE_CLASSES}}


def fractions(rows: dict, ceiling: dict) -> dict:
    """Each ranking's rare in its top 100 as a fraction of the ceiling's, overall and per class."""
    return {name: {"overall": r["top"]["100"] / max(ceiling["top100"], 1),
                   "per_class": {c: (r["per_class"][c] / ceiling["per_class"][c] if ceiling["per_class"][c] else None)
                                 for c in RARE_CLASSES}} for name, r in rows.items()}


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
    print(f"  {'ranking':64s} {'top 50':>6s} {'top 100':>7s} {'top 500':>7s} {'AP':>6s} | top 100: qpe / eclipse / absorption / step "
          f"| rest: constant / flare / dip / red noise")
    for name, r in rows.items():
        pc = " / ".join(str(r["per_class"][c]) for c in RARE_CLASSES)
        rest = " / ".join(str(r["rest"][c]) for c in COMMON_CLASSES)
        print(f"  {name:64s} {r['top']['50']:6d} {r['top']['100']:7d} {r['top']['500']:7d} {r['ap']:6.3f} | {pc:>22s} | {rest}")


def print_ceiling(entry: dict) -> None:
    """The ceiling, each ranking's fraction of it and the simulated user's curve."""
    ceiling = entry["ceiling"]
    print(f"  ceiling (best supervised ranking): {ceiling['top100']} rare in the top 100; per class "
          + " / ".join(f"{c} {ceiling['per_class'][c]}" for c in RARE_CLASSES))
    for name in ("discovery_score", "discovery_score_classical (ablation: no model)", "seed VAE anomaly_score (raw)", "variable_fpp (classical, calibrated)"):
        if name in entry["fraction_of_ceiling"]:
            f = entry["fraction_of_ceiling"][name]
            per = " / ".join("-" if f["per_class"][c] is None else f"{f['per_class'][c]:.2f}" for c in RARE_CLASSES)
            print(f"  {name:64s} {f['overall']:.2f} of the ceiling (per class {per})")
    r = entry["rankings"]
    print(f"  discovery_score / its ablation in the top 100: "
          f"{r['discovery_score']['top']['100'] / max(r['discovery_score_classical (ablation: no model)']['top']['100'], 1):.2f}x")
    for name, curve in entry["labels"].items():
        if isinstance(curve, dict):
            print(f"  simulated user, {name}: " + "; ".join(
                f"{k} labels: {v['labelled']:.1f} labelled, {v['labelled + next 100']:.1f} with the next 100 "
                f"({v['labelled + next 100'] / max(ceiling['top100'], 1):.2f} of the ceiling)" for k, v in curve.items()))


def label_figure(report: dict, path: Path) -> None:
    """Rare sources among the labelled plus the next 100, against the labels given, per test archive."""
    from matplotlib.figure import Figure

    entries = {name: e for name, e in report["archives"].items() if "labels" in e}
    if not entries:
        return
    fig = Figure(figsize=(4.2 * len(entries), 3.6))
    axes = fig.subplots(1, len(entries), squeeze=False)[0]
    styles = {"label-driven": ("tab:red", "o-"), "AAD": ("tab:blue", "s--"), "no feedback": ("tab:grey", "^:")}
    for ax, (name, entry) in zip(axes, entries.items()):
        for curve_name, curve in entry["labels"].items():
            if not isinstance(curve, dict):
                continue
            colour, style = next(v for key, v in styles.items() if curve_name.startswith(key))
            k = [int(x) for x in curve]
            ax.plot(k, [v["labelled + next 100"] for v in curve.values()], style, color=colour, label=curve_name)
        ceiling = entry["ceiling"]["top100"]
        ax.axhline(ceiling, color="k", lw=1, label="ceiling: the best supervised ranking's top 100")
        ax.axhline(0.9 * ceiling, color="k", lw=0.8, ls="--", label="90 % of the ceiling")
        ax.set_xscale("log")
        ax.set_xticks(k, [str(x) for x in k])
        ax.set_xlabel("labels given (the top candidate each time)")
        ax.set_ylim(bottom=0)
        ax.set_title(f"{name.split(',')[0]} (ceiling {ceiling})", fontsize=9)
    axes[0].set_ylabel(f"rare sources among labelled + next 100\n(of {entries[next(iter(entries))]['n_rare']})")
    axes[0].legend(fontsize=6.5, loc="lower right")
    fig.suptitle("a simulated user labels the top candidate; the ranking re-fits after each label", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=20_000, help="sources per archive")
    p.add_argument("--rare", type=float, default=0.01)
    p.add_argument("--variants", type=int, nargs="*", default=[1, 2], help="other generators to test on (etl.synth --variant)")
    p.add_argument("--config", type=Path, default=ROOT / "configs" / "discovery.toml")
    p.add_argument("--epochs", type=int, default=None, help="override the config's epochs (quick runs)")
    p.add_argument("--seed-epochs", type=int, default=20, help="epochs of the seed-style VAE (0: leave it out)")
    p.add_argument("--null", type=int, default=None, help="simulated constants to calibrate on (default: features.build's)")
    p.add_argument("--active-seeds", type=int, default=2, help="seeds of the AAD forest's simulated user")
    p.add_argument("--labels", type=int, nargs="+", default=[10, 30, 100],
                   help="simulated user: rare found among the labelled plus the next 100 after this many labels")
    p.add_argument("--gru-epochs", type=int, default=20, help="epochs of the supervised GRU of the ceiling (0: leave it out)")
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
    gru = None
    if args.gru_epochs:
        gru = SupervisedGru(model, args.out / "run-supervised-gru")
        train_truth = pl.read_parquet(args.out / "train-archive" / "truth.parquet").filter(pl.col("expected") == "ok")
        gru_record = gru.train(train_store, train_truth, args.gru_epochs)
    report = {"n": args.n, "rare": args.rare, "config": str(args.config), "archives": {},
              "supervised_gru": gru_record if gru else None}
    for k, store in tests.items():
        truth = pl.read_parquet(store.parent / f"{store.stem}-archive" / "truth.parquet").filter(pl.col("expected") == "ok") \
            .select("source_id", "class", pl.col("net_counts").alias("net_counts_truth"))
        seed_sets = model_sets(store, seed_model, args.null) if seed_model else None
        for label, ckpt in ([("trained on another archive", model)] + ([("trained on this archive", own)] if k == 0 else [])):
            rows, frame = evaluate(store, truth, model_sets(store, ckpt, args.null), seed_sets)
            entry = {"rankings": rows, "n_rare": int(frame["class"].is_in(list(RARE_CLASSES)).sum())}
            title = f"generator variant {k} ({store.name}), discovery model {label}: {entry['n_rare']} rare of {frame.height}"
            if label.startswith("trained on another"):
                entry["supervised"] = supervised_rows(frame, gru.proba(store) if gru else None)
                entry["ceiling"] = ceiling_of(entry["supervised"])
                entry["fraction_of_ceiling"] = fractions(rows | entry["supervised"], entry["ceiling"])
                entry["labels"] = label_curves(frame, args.active_seeds, args.labels)
                rows = rows | entry["supervised"]
            if k == 0 and label.startswith("trained on another"):
                figure(frame, store, args.out / "top_ranked.png")
                # what the data allow: rare sources whose variability is significant at all
                entry["rare_variable"] = {thr: int(frame.filter(pl.col("class").is_in(list(RARE_CLASSES))
                                                                & (pl.col("variable_fpp") < float(thr))).height)
                                          for thr in ("0.01", "0.1")}
            report["archives"][f"variant {k}, model {label}"] = entry
            print_table(title, rows)
            if "ceiling" in entry:
                print_ceiling(entry)
            if "rare_variable" in entry:
                print(f"  rare sources with variable_fpp < 0.01 / 0.1: {entry['rare_variable']['0.01']} / {entry['rare_variable']['0.1']}")
    spread = [e["rankings"]["discovery_score"]["top"]["100"] for name, e in report["archives"].items() if "another" in name]
    ablation = [e["rankings"]["discovery_score_classical (ablation: no model)"]["top"]["100"]
                for name, e in report["archives"].items() if "another" in name]
    report["spread"] = {"discovery_top100": spread, "ablation_top100": ablation}
    print(f"\ndiscovery_score top 100 over generators {sorted(tests)}: {spread} (ablation {ablation})")
    (args.out / "discovery.json").write_text(json.dumps(report, indent=1))
    label_figure(report, args.out / "label_curve.png")
    print(f"{args.out / 'discovery.json'}, {args.out / 'top_ranked.png'}, {args.out / 'label_curve.png'}")


if __name__ == "__main__":
    main()
