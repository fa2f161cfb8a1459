"""What per-source position errors buy a cross-match, against reference density.

    python benchmarks/position_errors.py [--n 4000] [--side 4] [--densities 1000 5000 20000]

A ``--side`` x ``--side`` deg patch of ``--n`` sources with eRASS1-like position errors (the
synthetic generator's POS_ERR for log-normal net counts around 10), 30 % with a counterpart
offset by a 2-D Gaussian of that error, plus unrelated reference objects at each density
(per deg^2; Gaia DR3 has ~10,000-100,000 per deg^2 away from the Galactic plane and more in it).
Each source is matched to its nearest reference object (``features.crossmatch.match_astropy``,
the code ``python -m features.crossmatch`` runs) within a fixed radius, or within the radius and
``max_sigma`` times its own per-axis error (``--max-sigma``). Printed per density and rule: true
counterparts found, and sources matched to a wrong object (a field object, for the 70 % without a
counterpart or a counterpart beaten by a nearer field object).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from etl.synth import position_error, scatter_positions  # noqa: E402
from features.crossmatch import match_astropy  # noqa: E402

RULES = ((10.0, None), (15.0, None), (15.0, 3.0), (30.0, 3.0))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=4000)
    p.add_argument("--side", type=float, default=4.0, help="patch side, deg (at the equator)")
    p.add_argument("--densities", type=float, nargs="+", default=[1000, 5000, 20000], help="reference objects per deg^2")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    rng = np.random.default_rng(args.seed)
    ra = rng.uniform(100, 100 + args.side, args.n)
    dec = rng.uniform(-args.side / 2, args.side / 2, args.n)
    sigma = np.array([position_error(c) for c in np.exp(rng.normal(np.log(10), 0.9, args.n))]) / np.sqrt(2)
    known = np.flatnonzero(rng.random(args.n) < 0.3)
    cp = scatter_positions(rng, ra[known], dec[known], sigma[known])
    truth = np.full(args.n, -1)
    truth[known] = np.arange(len(known))
    print(f"{args.n:,} sources in {args.side:g} x {args.side:g} deg, {len(known):,} with a counterpart; "
          f"median POS_ERR {np.median(sigma) * np.sqrt(2):.1f} arcsec")
    for density in args.densities:
        n_field = int(density * args.side**2)
        ref_ra = np.r_[cp.ra.deg, rng.uniform(100, 100 + args.side, n_field)]
        ref_dec = np.r_[cp.dec.deg, rng.uniform(-args.side / 2, args.side / 2, n_field)]
        for radius, k in RULES:
            limit = None if k is None else np.minimum(k * sigma, radius)  # the reference has no errors here
            pair_limit = None if limit is None else (lambda i_src, i_ref, limit=limit: limit[i_src])
            nearest, _, _ = match_astropy(ra, dec, ref_ra, ref_dec, radius, pair_limit)
            right = int(((nearest >= 0) & (nearest == truth)).sum())
            wrong = int(((nearest >= 0) & (nearest != truth)).sum())
            rule = f"radius {radius:g}\"" + (f" + max-sigma {k:g}" if k else "")
            print(f"density {density:,.0f}/deg2, {rule}: counterparts found {right:,} of {len(known):,} "
                  f"({right / len(known):.3f}), wrong matches {wrong:,}")


if __name__ == "__main__":
    main()
