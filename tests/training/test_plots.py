"""Figures without pyplot: the library never switches a user's matplotlib backend."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_plots_leave_the_backend_alone(tmp_path):
    """training/plots.py called matplotlib.use("Agg") at import."""
    code = f"""
import matplotlib
matplotlib.use("pdf")
import numpy as np
from training import plots
fig = plots.loss_figure([{{"epoch": 1, "train_loss": 2.0, "val_loss": 1.5}}, {{"epoch": 2, "train_loss": 1.0}}])
plots.save(fig, {str(tmp_path / 'loss.png')!r})
plots.save(plots.latent_figure(np.random.default_rng(0).normal(size=(20, 4)), np.ones(20), "score"), {str(tmp_path / 'pca.png')!r})
print(matplotlib.get_backend())
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "pdf"
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (tmp_path / "pca.png").stat().st_size > 1000
