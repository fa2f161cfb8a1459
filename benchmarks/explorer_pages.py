"""Explorer page timings on a 1,000,000-row catalog, server side and in a real browser.

    python benchmarks/explorer_pages.py [--rows 1000000] [--dir /tmp/bench-explorer] [--no-browser]

A real store of 20 synthetic sources whose catalog is extended to ``--rows`` rows at random
positions (each row points at one of the real light curves, as in benchmarks/cone.py), with
feature sets of ``--rows`` rows written through the feature store: ``poisson_variability``-like
scores (FPPs, net counts), ``variability`` (n_bins, hardness) and 16 VAE latents. Times, each
the median of ``--repeat`` runs:

* server side (``explorer.table``), the first call and again (orders are cached): start-up (store + every set read into memory), first page by
  the default score, a page sorted by another column, a page with two filter terms, the
  unlabelled-only page, a cone, the CSV export of a filtered selection, "more like this";
* in headless Chromium against ``python -m explorer``: the candidates view until the first row
  is drawn (a fresh page load, JavaScript included), the next table page, a source view until
  its light curve is drawn.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from archives import ensure_store  # noqa: E402

from etl.catalog import read_catalog, with_sky_index, write_catalog  # noqa: E402
from etl.store import open_store  # noqa: E402
from explorer.table import CandidateTable, Query  # noqa: E402
from features.featurestore import write_feature_set  # noqa: E402
from features.labels import LabelLog  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def build(path: Path, base: Path, rows: int) -> None:
    shutil.rmtree(path, ignore_errors=True)
    shutil.copytree(base, path)
    cat = read_catalog(str(path))
    rng = np.random.default_rng(0)
    ids = [f"s{i:07d}" for i in range(rows)]
    cat = cat.filter(pl.col("status") == "ok").sample(rows, with_replacement=True, seed=0).with_columns(
        pl.Series("source_id", ids), pl.Series("ra", rng.uniform(0, 360, rows)),
        pl.Series("dec", np.degrees(np.arcsin(rng.uniform(-1, 1, rows)))))
    write_catalog(str(path), with_sky_index(cat))
    fpp = lambda: np.clip(rng.uniform(0, 1, rows) ** 3, 1e-12, 1)  # noqa: E731 - skewed to small FPPs
    write_feature_set(path, "poisson_variability", pl.DataFrame({
        "source_id": ids, "variable_fpp": fpp(), "ampl_sig_fpp": fpp(), "nev_fpp": fpp(), "bexvar_fpp": fpp(),
        **{f"net_counts_b{b}": rng.lognormal(3, 1, rows) for b in (1, 2, 3)}}), {"bench": rows})
    write_feature_set(path, "variability", pl.DataFrame({
        "source_id": ids, "n_bins": rng.integers(3, 200, rows), "hr_12": rng.uniform(-1, 1, rows), "hr_23": rng.uniform(-1, 1, rows),
        **{f"reduced_chi2_b{b}": rng.lognormal(0, 0.5, rows) for b in (1, 2, 3)}}), {"bench": rows})
    write_feature_set(path, "vae_anomaly", pl.DataFrame({"source_id": ids, "anomaly_score": rng.lognormal(0, 1, rows),
                                                         "anomaly_fpp": fpp()}), {"bench": rows})
    write_feature_set(path, "vae_latent", pl.DataFrame({"source_id": ids, **{f"mu_{j}": rng.normal(size=rows).astype(np.float32)
                                                                             for j in range(16)}}), {"bench": rows})


def timed(fn, repeat: int) -> tuple[float, float, object]:
    """(first call, median of the repeats, result): a query's first call sorts, the repeats hit the cache."""
    times, out = [], None
    for _ in range(repeat + 1):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return times[0], float(np.median(times[1:])), out


def browser_timings(store: Path, source_id: str, repeat: int) -> dict[str, float]:
    sys.path.insert(0, str(ROOT / "tests" / "explorer"))
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from test_browser import NEXT_PAGE, ROW_LINK, Server, plot_traces, wait

    server = Server(str(store), store.parent / "server.log")
    t = time.perf_counter()
    server.start()
    out = {"server start until it answers": time.perf_counter() - t}
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(options=opts, service=webdriver.ChromeService(executable_path=shutil.which("chromedriver")))
    try:
        first, nxt, source = [], [], []
        for _ in range(repeat):
            t = time.perf_counter()
            driver.get(server.url + "/")
            wait(driver, EC.presence_of_element_located((By.CSS_SELECTOR, ROW_LINK)), 120)
            first.append(time.perf_counter() - t)
            top = driver.find_element(By.CSS_SELECTOR, ROW_LINK).text
            t = time.perf_counter()
            driver.find_element(By.CSS_SELECTOR, NEXT_PAGE).click()
            wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, ROW_LINK).text != top, 120)
            nxt.append(time.perf_counter() - t)
            t = time.perf_counter()
            driver.get(f"{server.url}/source/{source_id}")
            wait(driver, lambda d: plot_traces(d, "lc-graph"), 120)
            source.append(time.perf_counter() - t)
        out |= {"candidates view, page load until the first row": float(np.median(first)),
                "next table page": float(np.median(nxt)),
                "source view, page load until the light curve": float(np.median(source))}
    finally:
        driver.quit()
        server.kill()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--dir", type=Path, default=Path("/tmp/bench-explorer"))
    p.add_argument("--no-browser", action="store_true")
    args = p.parse_args()
    base = ensure_store(args.dir, 20, seed=9)
    path = args.dir / f"explorer-{args.rows}.zarr"
    if not (path / "features" / "vae_latent").exists():
        t = time.perf_counter()
        build(path, base, args.rows)
        print(f"built a {args.rows:,}-row catalog with 4 feature sets in {time.perf_counter() - t:.0f} s")
    (path / "labels").exists() and shutil.rmtree(path / "labels")
    t = time.perf_counter()
    store = open_store(str(path))
    table = CandidateTable.from_store(store, LabelLog.for_store(store))
    start = time.perf_counter() - t
    ids = table.frame["source_id"]
    for i in range(50):
        table.labels.append(ids[i * (len(ids) // 50)], "boring" if i % 3 else "interesting")
    q_filter = Query(filter_query="{n_bins} >= 20 && {net_counts_b1} > 30")
    server = {
        "start-up: open store, read catalog + 4 sets": (start, float("nan"), None),
        "first page, default score (combined_score)": timed(lambda: table.page(Query()), args.repeat),
        "page 100, sorted by reduced_chi2_b2 (DataTable sort)": timed(
            lambda: table.page(Query(sort_by=[{"column_id": "reduced_chi2_b2", "direction": "desc"}], page=100)), args.repeat),
        "first page, two filter terms": timed(lambda: table.page(q_filter), args.repeat),
        "first page, unlabelled only (50 labels)": timed(lambda: table.page(Query(label_state="unlabelled")), args.repeat),
        "first page, cone of 1 deg": timed(lambda: table.page(Query(cone=(10.0, 10.0, 3600.0))), args.repeat),
        "export CSV of the filtered selection": timed(lambda: table.export(q_filter, "csv"), args.repeat),
        "more like this (6 nearest of 1M in 16-d latent space)": timed(lambda: table.similar(ids[5], 6), args.repeat),
    }
    print(f"\n{table.frame.height:,} sources, {len(table.frame.columns)} columns in memory "
          f"({table.frame.estimated_size() / 2**20:.0f} MiB + latents {table.latents.nbytes / 2**20:.0f} MiB)")
    print(f"filtered selection: {table.select(q_filter).height:,} rows; export {len(server['export CSV of the filtered selection'][2]) / 2**20:.0f} MiB")
    print(f"  {'server side':68s} {'first':>8s} {'again':>8s}")
    for name, (first, again, _) in server.items():
        print(f"  server  {name:60s} {first * 1e3:6.0f} ms {again * 1e3:6.0f} ms")
    if not args.no_browser:
        for name, seconds in browser_timings(path, ids[len(ids) // 3], args.repeat).items():
            print(f"  browser {name:60s} {seconds * 1e3:6.0f} ms")


if __name__ == "__main__":
    main()
