"""Active anomaly detection with a simulated expert: how many wanted sources among the first 50/100/200 shown.

    python benchmarks/active_learning.py [--n 20000] [--epochs 20] [--loss chi2] [--out /tmp/science-check]

The archives of ``benchmarks/science_check.py`` (and its cached stores and checkpoints when the
same ``--out`` is used): the VAE is trained on one synthetic archive and every score is computed
on another, labelled one of ``--n`` sources (truth.parquet) that no model saw. An oracle answers
from the truth table, for two searches:

* **variables**: every non-constant source is ``variable``, constants are ``boring``;
* **dips** (a rarer class): dips are ``interesting``, everything else ``boring`` (a flare is not
  what this user looks for).

For each search the first 50/100/200 sources shown are counted: by the forest with a label after
every source (``features.active.simulate_expert``, what the explorer's "next candidate" does),
by the same forest without feedback (static), and by static single scores (combined score,
classical ``variable_fpp``, VAE ``anomaly_fpp``) and chance. Also times one re-ranking (fit
from 20 labels + scoring) at 100,000 sources (the archive's features tiled 5x with jitter).
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
from archives import ensure_store  # noqa: E402
from science_check import train  # noqa: E402

from features.active import ActiveRanker, combined_score, feature_matrix, simulate_expert  # noqa: E402
from features.builders import build_poisson_variability, build_variability  # noqa: E402
from features.featurestore import get_features  # noqa: E402
from training.score import build_model_features  # noqa: E402

SHOWN = (50, 100, 200)


def counts(shown: list[str], wanted: set[str]) -> dict[str, int]:
    hits = np.cumsum([s in wanted for s in shown])
    return {str(k): int(hits[k - 1]) for k in SHOWN if k <= len(hits)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=20_000)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--loss", default="chi2", choices=["mse", "chi2", "poisson"])
    p.add_argument("--null", type=int, default=None)
    p.add_argument("--models", nargs="+", default=["aad", "pine"])
    p.add_argument("--seeds", type=int, default=2, help="forest seeds per model (feedback runs are averaged over them)")
    p.add_argument("--out", type=Path, default=Path("/tmp/science-check"))
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    train_store = ensure_store(args.out, args.n, seed=101, name="train")
    test_store = ensure_store(args.out, args.n, seed=202, name="test")
    ckpt = train(args, args.loss, train_store)
    build_variability(test_store)
    poisson, _ = build_poisson_variability(test_store, progress=True, n_null=args.null)
    model_sets = {m["name"]: m["version"] for m, _ in build_model_features(test_store, str(ckpt), progress=False, n_null=args.null)}
    sets = ["variability", f"poisson_variability@{poisson['version']}", *[f"{k}@{v}" for k, v in model_sets.items()]]
    frame = get_features(test_store, sets, catalog_columns=["source_id"]).collect()
    truth = pl.read_parquet(args.out / "test-archive" / "truth.parquet").select("source_id", "class")
    frame = frame.join(truth, on="source_id")
    frame = frame.with_columns(combined_score(frame.columns))
    x, names = feature_matrix(frame)
    ids = frame["source_id"]
    klass = dict(zip(ids.to_list(), frame["class"].to_list()))
    searches = {"variables": ({s for s, c in klass.items() if c != "constant"}, "variable"),
                "dips": ({s for s, c in klass.items() if c == "dip"}, "interesting")}
    statics = {"combined_score (static)": frame.sort("combined_score", descending=True, nulls_last=True),
               "variable_fpp (static)": frame.sort("variable_fpp", nulls_last=True),
               "VAE anomaly_fpp (static)": frame.sort("anomaly_fpp", nulls_last=True)}
    report = {"n": frame.height, "features": names, "checkpoint": str(ckpt), "searches": {}}
    for search, (wanted, label) in searches.items():
        rows = {"chance (expected)": {str(k): round(k * len(wanted) / frame.height, 1) for k in SHOWN}}
        rows |= {name: counts(f["source_id"].head(max(SHOWN)).to_list(), wanted) for name, f in statics.items()}
        oracle = lambda s, wanted=wanted, label=label: label if s in wanted else "boring"  # noqa: E731
        for model in args.models:
            for feedback in (False, True):
                runs, seconds = [], []
                for seed in range(args.seeds):
                    t = time.perf_counter()
                    shown = simulate_expert(ActiveRanker(ids, x, model, seed), oracle, max(SHOWN), feedback)
                    seconds.append(time.perf_counter() - t)
                    runs.append(counts(shown, wanted))
                name = f"{model} forest, {'feedback after every label' if feedback else 'no feedback (static)'}"
                rows[name] = {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}
                rows[name]["seconds per run"] = round(float(np.mean(seconds)), 1)
                print(search, name, rows[name], flush=True)
        report["searches"][search] = {"n_wanted": len(wanted), "rows": rows}

    # re-ranking speed at 100,000 sources: the archive tiled 5x, jittered so that rows differ
    rng = np.random.default_rng(0)
    big = np.vstack([x + rng.normal(0, 1e-3, x.shape) for _ in range(5)])
    big_ids = np.array([f"s{i}" for i in range(len(big))])
    report["rerank_100k"] = {}
    for model in args.models:
        t = time.perf_counter()
        ranker = ActiveRanker(big_ids, big, model, 0)
        build = time.perf_counter() - t
        times = []
        for k in range(5):
            t = time.perf_counter()
            ranker.update(big_ids[: 4 * (k + 1)].tolist(), (["interesting", "boring"] * 10)[: 4 * (k + 1)])
            ranker.next(1)
            times.append(time.perf_counter() - t)
        report["rerank_100k"][model] = {"build_s": round(build, 2), "rerank_median_s": round(float(np.median(times)), 2),
                                        "rerank_max_s": round(float(np.max(times)), 2)}
        print(f"{model}: forest on 100,000 x {big.shape[1]} built in {build:.2f} s; re-ranking after a label "
              f"median {np.median(times):.2f} s, max {np.max(times):.2f} s")

    out = args.out / "active_learning.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"\n{frame.height} test sources, {len(names)} features; {out}")
    for search, entry in report["searches"].items():
        print(f"\n{search} ({entry['n_wanted']} of {frame.height}): wanted among the first 50 / 100 / 200 shown")
        for name, row in entry["rows"].items():
            print(f"  {name:55s} " + " / ".join(f"{row.get(str(k), float('nan')):6.1f}" for k in SHOWN))


if __name__ == "__main__":
    main()
