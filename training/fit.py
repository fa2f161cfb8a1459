"""Train the GRU-VAE on a light-curve store.

    python -m training.fit --store STORE [--epochs N] [--run-dir DIR] [--config FILE.toml] [--key value ...]
    python -m training.fit --resume RUN_DIR_OR_H5 [--epochs N]
    torchrun --nproc_per_node 2 -m training.fit --store STORE ...      # DDP (gloo on CPU, nccl on GPU)

Every key of :class:`training.config.TrainConfig` is a flag. A run directory holds
``config.toml`` (as used), ``checkpoints/{last,best,epoch_NNNNNN}.h5``, ``metrics.jsonl``,
``training_plots/*.png``, ``scores_test.parquet`` and wandb's files (offline unless an API
key is configured). Exit codes: 0 done, 2 bad input (store, config, checkpoint), 3 the loss
became NaN (the last good checkpoint is kept).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import netrc
import os
import sys
import time
import uuid
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from common import cli
from common.errors import UserError
from common.progress import bar as progress_bar
from etl.lightcurve import band_labels
from etl.store import open_store
from training import plots
from training.checkpoint import find_checkpoint, load_checkpoint, read_checkpoint_info, restore, save_checkpoint
from training.config import TrainConfig, load_config
from training.data import BucketedLightCurves, DataError, feature_options, hide_band, model_inputs, select_splits
from training.evaluate import evaluate_checkpoint, reconstruct
from training.lineage import finished_run
from training.model import batch_elbo, build_model, check_bands, make_optimizer, pick_device
from training.threads import tune_threads

#: Thread tuning runs only when the run has at least this many batches to train (all epochs),
#: and stops after TUNE_BUDGET_S seconds; a short run keeps torch's default thread count.
TUNE_MIN_BATCHES = 2000
TUNE_BUDGET_S = 3.0


class TrainingError(UserError, RuntimeError):
    """Training cannot go on (a NaN loss: lower --lr); the message says where the last good checkpoint is. Exit status 3."""

    exit_code = 3


def resolve_wandb_mode(cfg: TrainConfig) -> str:
    """--wandb-mode, else WANDB_MODE, else online only when an API key is configured."""
    if cfg.wandb_mode:
        return cfg.wandb_mode
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    try:
        if netrc.netrc().authenticators("api.wandb.ai"):
            return "online"
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        pass
    return "offline"


def write_toml(cfg: TrainConfig, path: Path) -> None:
    """Save the config as TOML that ``--config`` reads back."""
    lines = ["[train]"]
    for key, value in cfg.to_dict().items():
        text = ("true" if value else "false") if isinstance(value, bool) else json.dumps(value) if isinstance(value, str) else repr(value)
        lines.append(f"{key} = {text}")
    path.write_text("\n".join(lines) + "\n")


class Trainer:
    """One training run: data, model, optimizer, logging, checkpoints. See :func:`main`."""

    def __init__(self, cfg: TrainConfig, resume_from: str | None = None):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = pick_device(cfg.device, local_rank)
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.main = self.rank == 0
        self.cfg = cfg
        torch.manual_seed(cfg.seed)

        store = open_store(cfg.store, cache_bytes=cfg.cache_mib * 2**20)  # fails fast: missing, schema
        catalog = store.catalog().collect()
        if len(store) == 0:
            raise DataError(f"{cfg.store}: the store has no ingested light curves")
        self.store = store
        tables = select_splits(catalog, cfg.limit, cfg.seed, cfg.min_len)
        self.train_sources = tables["train"]
        if len(self.train_sources) == 0:
            raise DataError(f"{cfg.store}: no training sources left after filtering (min_len={cfg.min_len}, limit={cfg.limit})")
        self.val_sources = tables["val"]
        common = dict(target=cfg.target, seed=cfg.seed, rank=self.rank, world_size=self.world, cache_mib=cfg.cache_mib,
                      **feature_options(cfg))
        self.train_ds = BucketedLightCurves(cfg.store, self.train_sources, cfg.batch_size, cfg.max_len, shuffle=True, **common)
        self.val_ds = (BucketedLightCurves(cfg.store, self.val_sources, cfg.batch_size, cfg.max_len, shuffle=False, **common)
                       if len(self.val_sources) >= self.world else None)

        self.model = build_model(cfg, len(store.e_min)).to(self.device)
        self.optimizer = make_optimizer(self.model, cfg.lr)
        self.start_epoch, self.step, self.best_val, self.wandb_id = 1, 0, math.inf, ""
        self.test_sources = tables["test"]
        if resume_from:
            ckpt = load_checkpoint(resume_from)
            check_bands(ckpt, store)
            restore(ckpt, self.model, self.optimizer)
            for group in self.optimizer.param_groups:
                group["lr"] = cfg.lr  # the value logged is the value used
            self.start_epoch, self.step, self.best_val, self.wandb_id = ckpt.epoch + 1, ckpt.step, ckpt.best_val, ckpt.wandb_id
        self.threads_before = torch.get_num_threads()
        self._set_threads()
        self.net = DistributedDataParallel(self.model) if self.world > 1 else self.model
        self.amp = cfg.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)

        self.run_dir = Path(cfg.run_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.plot_dir = self.run_dir / "training_plots"
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.history: list[dict] = []
        if self.main:
            self.ckpt_dir.mkdir(parents=True, exist_ok=True)
            self.plot_dir.mkdir(parents=True, exist_ok=True)
            write_toml(cfg, self.run_dir / "config.toml")
            self.history = self._load_history()
        self.benchmark_ids = self._benchmark_sources()
        self.wandb_run = self._init_wandb() if self.main else None

    # -- setup helpers -----------------------------------------------------------------
    def _set_threads(self) -> None:
        """``--threads N``, or on one CPU process the fastest count timed on a few real batches."""
        if self.cfg.threads:
            torch.set_num_threads(self.cfg.threads)
            return
        if self.device.type != "cpu" or self.world > 1:  # torchrun gives each rank its OMP_NUM_THREADS
            return
        batches = len(self.train_ds) * (self.cfg.epochs - self.start_epoch + 1)
        if batches < TUNE_MIN_BATCHES:
            # Timing costs a few seconds; a short run cannot win them back. Keep torch's count.
            self.cfg.threads = torch.get_num_threads()
            return
        self.cfg.threads, timings = tune_threads(self.model, self.train_ds, self.cfg.kld_coef, self.cfg.loss,
                                                 budget_s=TUNE_BUDGET_S)
        if timings and self.main:
            timed = ", ".join(f"{n}: {t * 1e3:.1f}" for n, t in timings.items())
            print(f"CPU threads: {self.cfg.threads} (ms per batch at {timed}; --threads N to choose)", flush=True)

    def _load_history(self) -> list[dict]:
        """Metrics of epochs before the resume point; later lines (a killed run's) are dropped."""
        if not self.metrics_path.exists():
            return []
        rows = [json.loads(line) for line in self.metrics_path.read_text().splitlines() if line.strip()]
        rows = [r for r in rows if r["epoch"] < self.start_epoch]
        self.metrics_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return rows

    def _benchmark_sources(self) -> list[str]:
        """A fixed set of validation sources (longest first) for the reconstruction figure."""
        pool = self.val_sources if len(self.val_sources) else self.train_sources
        order = np.argsort(-pool.lengths, kind="stable")[: self.cfg.n_benchmark]
        return [pool.source_ids[i] for i in order]

    def _init_wandb(self):
        mode = resolve_wandb_mode(self.cfg)
        if mode == "disabled":
            return None
        os.environ.setdefault("WANDB_ERROR_REPORTING", "false")
        import wandb

        if not self.wandb_id:
            self.wandb_id = uuid.uuid4().hex[:12]
        return wandb.init(project=self.cfg.wandb_project, dir=str(self.run_dir), config=self.cfg.to_dict(), mode=mode,
                          id=self.wandb_id, resume="allow", name=self.run_dir.name,
                          settings=wandb.Settings(silent=True, console="off"))

    # -- the loop -------------------------------------------------------------------------
    def _loader(self, ds: BucketedLightCurves) -> DataLoader:
        workers = self.cfg.num_workers
        return DataLoader(ds, batch_size=None, num_workers=workers, pin_memory=self.device.type == "cuda",
                          multiprocessing_context="spawn" if workers > 0 else None, persistent_workers=False)

    def _all_sum(self, *values: float) -> list[float]:
        if self.world == 1:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()

    def train_epoch(self, epoch: int) -> dict:
        """One pass over this rank's batches.

        The loss stays on the device: sums and a non-finite flag are accumulated there and
        read back every ``log_every`` steps and at the end (as nanoGPT does), not after every
        step, which on a GPU would be a sync point per step. A NaN found at a read-back stops
        the run before anything is checkpointed, so ``last.h5`` holds the last good epoch.
        """
        self.net.train()
        self.train_ds.set_epoch(epoch)
        sums = torch.zeros(4, dtype=torch.float64, device=self.device)  # loss * B, recon, kl, non-finite steps
        n_curves = n_steps = 0
        started = time.perf_counter()
        bar = progress_bar(len(self.train_ds), f"epoch {epoch}/{self.cfg.epochs}", "batch",
                           show=self.cfg.progress and self.main, leave=False, log_every=math.inf)
        for i, batch in enumerate(self._loader(self.train_ds), start=1):
            x, lengths, cond, steps = model_inputs(batch, self.device)
            if self.cfg.hide_band:
                x, cond = hide_band(x, cond, self._bands_to_hide(x.shape[0], cond.shape[1] // 2))
            ctx = torch.autocast("cuda", dtype=torch.float16) if self.amp else nullcontext()
            with ctx:
                recon, mu, logvar = self.net(x, lengths, cond, steps)
            out = batch_elbo(recon, mu, logvar, batch, self.device, self.cfg.kld_coef, self.cfg.loss)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(out["loss"]).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.step += 1
            b = x.shape[0]
            loss = out["loss"].detach()
            sums += torch.stack([loss * b, out["recon"].detach(), out["kl"].detach(), (~torch.isfinite(loss)).double()])
            n_curves += b
            n_steps += int(batch["lengths"].sum())
            if i % self.cfg.log_every == 0 or i == len(self.train_ds):
                totals = sums.tolist()  # the one read-back
                self._check_finite(totals[3], epoch)
                bar.set_postfix(loss=f"{totals[0] / n_curves:.4g}")
            bar.update(1)
        bar.close()
        seconds = time.perf_counter() - started
        loss_sum, recon_sum, kl_sum, bad, n_curves, n_steps = self._all_sum(*sums.tolist(), n_curves, n_steps)
        self._check_finite(bad, epoch)
        return {"train_loss": loss_sum / n_curves, "train_recon": recon_sum / n_curves, "train_kl": kl_sum / n_curves,
                "steps_per_s": n_steps / seconds, "curves": int(n_curves), "seconds": seconds}

    def _bands_to_hide(self, n: int, n_bands: int) -> torch.Tensor:
        """Per light curve: a random band to hide with probability ``hide_band``, else -1 (torch's RNG: resumable)."""
        hide = torch.rand(n) < self.cfg.hide_band
        return torch.where(hide, torch.randint(0, n_bands, (n,)), torch.full((n,), -1)).to(self.device)

    def _check_finite(self, bad: float, epoch: int) -> None:
        bad = self._all_sum(bad)[0]
        if bad or not math.isfinite(bad):
            raise TrainingError(f"loss became NaN/inf in epoch {epoch} (by step {self.step}); "
                                f"the last good checkpoint is {self.ckpt_dir / 'last.h5'}")

    @torch.no_grad()
    def validate(self) -> float | None:
        if self.val_ds is None:
            return None
        self.net.eval()
        loss_sum = count = 0.0
        for batch in self._loader(self.val_ds):
            recon, mu, logvar = self.net(*model_inputs(batch, self.device))
            out = batch_elbo(recon, mu, logvar, batch, self.device, self.cfg.kld_coef, self.cfg.loss)
            loss_sum += float(out["loss"]) * batch["x"].shape[0]
            count += batch["x"].shape[0]
        loss_sum, count = self._all_sum(loss_sum, count)
        return loss_sum / max(count, 1)

    def checkpoint(self, epoch: int, improved: bool) -> None:
        if not self.main:
            return
        args = (self.model, self.optimizer, self.cfg.to_dict(), epoch, self.step, self.best_val, self.wandb_id)
        save_checkpoint(self.ckpt_dir / "last.h5", *args)
        if improved:
            save_checkpoint(self.ckpt_dir / "best.h5", *args)
        if epoch % self.cfg.checkpoint_every == 0:
            save_checkpoint(self.ckpt_dir / f"epoch_{epoch:06d}.h5", *args)

    def plot(self, epoch: int) -> None:
        records = reconstruct(self.model, self.store, self.benchmark_ids, self.cfg, self.device)
        fig = plots.reconstruction_figure(records, band_labels(self.store.e_min, self.store.e_max), f"epoch {epoch}")
        path = self.plot_dir / f"reconstruction_epoch_{epoch:06d}.png"
        plots.save(fig, path)
        if self.wandb_run is not None:
            import wandb

            self.wandb_run.log({"reconstruction": wandb.Image(str(path)), "epoch": epoch}, step=epoch)

    def fit(self) -> dict:
        cfg = self.cfg
        if self.main:
            print(f"training on {len(self.train_sources)} sources ({len(self.val_sources)} validation), "
                  f"{len(self.train_ds)} batches/epoch/rank, padding {self.train_ds.padding_fraction():.1%}, "
                  f"device {self.device}, world size {self.world}, run dir {self.run_dir}", flush=True)
        epochs_bar = progress_bar(cfg.epochs - self.start_epoch + 1, "training epochs", "epoch", show=cfg.progress and self.main)
        for epoch in range(self.start_epoch, cfg.epochs + 1):
            stats = self.train_epoch(epoch)
            val = self.validate()
            improved = val is not None and val < self.best_val
            if improved:
                self.best_val = val
            elif val is None and stats["train_loss"] < self.best_val:
                self.best_val, improved = stats["train_loss"], True
            self.checkpoint(epoch, improved)
            record = {"epoch": epoch, "step": self.step, **stats, "val_loss": val, "lr": self.optimizer.param_groups[0]["lr"]}
            if self.main:
                self.history.append(record)
                with self.metrics_path.open("a") as fh:
                    fh.write(json.dumps(record) + "\n")
                if self.wandb_run is not None:
                    self.wandb_run.log({k: v for k, v in record.items() if v is not None}, step=epoch)
                if epoch % cfg.plot_every == 0 or epoch == cfg.epochs:
                    self.plot(epoch)
                epochs_bar.set_postfix(train=f"{stats['train_loss']:.4g}", val=f"{val:.4g}" if val is not None else "-")
            epochs_bar.update(1)
        epochs_bar.close()
        return self.finish()

    def finish(self) -> dict:
        summary = {"run_dir": str(self.run_dir), "best_val_loss": self.best_val, "checkpoint": str(self.ckpt_dir / "best.h5"),
                   "epochs": self.cfg.epochs}
        if self.history:
            summary["steps_per_s"] = float(np.mean([h["steps_per_s"] for h in self.history[-5:]]))
        if self.main:
            if self.history:
                plots.save(plots.loss_figure(self.history), self.plot_dir / "loss_curves.png")
            if self.cfg.evaluate and not len(self.test_sources):
                print("no sources in the test split: skipping the evaluation (score the store with training.evaluate --split all)")
            elif self.cfg.evaluate and (self.ckpt_dir / "best.h5").exists():
                path, scores, loss = evaluate_checkpoint(str(self.ckpt_dir / "best.h5"), self.cfg.store, "test",
                                                         device=str(self.device), progress=False)
                summary.update(test_loss=loss, scores=str(path), test_sources=len(scores))
            if self.wandb_run is not None:
                self.wandb_run.summary.update({k: v for k, v in summary.items() if isinstance(v, (int, float))})
                self.wandb_run.finish()
            (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        if self.world > 1:
            dist.barrier()
            dist.destroy_process_group()
        torch.set_num_threads(self.threads_before)
        return summary


def config_from_argv(argv: list[str]) -> tuple[TrainConfig, str | None]:
    """Config from the flags; with ``--resume``, the checkpoint's config overridden by the flags."""
    return resolve_config(load_config(argv), lambda saved: load_config(argv, base=saved))


def resolve_config(cfg: TrainConfig, with_saved) -> tuple[TrainConfig, str | None]:
    """Complete a config: with ``resume``, ``with_saved(saved_config)`` rebuilds it on the
    checkpoint's config; the run directory defaults to the one the user pointed at.

    A resumed run writes where ``--resume`` points (``runs/B`` or ``runs/B/checkpoints/x.h5``),
    never into the directory recorded in the checkpoint: after ``cp -r runs/A runs/B``, resuming
    ``runs/B`` must leave ``runs/A`` alone.
    """
    resume_from = None
    if cfg.resume:
        resume_from = str(find_checkpoint(cfg.resume))
        saved = read_checkpoint_info(resume_from)["config"]
        for key in ("resume", "run_dir"):
            saved.pop(key, None)
        cfg = with_saved(saved)
        if not cfg.run_dir:
            cfg.run_dir = str(Path(resume_from).parent.parent)
    if not cfg.run_dir:
        cfg.run_dir = str(Path("runs") / dt.datetime.now().strftime("%Y%m%d-%H%M%S"))
    return cfg.validate(), resume_from


def fit_once(cfg: TrainConfig) -> tuple[str, bool, dict]:
    """Train ``cfg`` into ``cfg.run_dir`` unless a finished run is there: ``(best checkpoint, trained, info)``.

    A run directory holds one training: with ``checkpoints/last.h5`` at ``cfg.epochs`` (and its
    ``summary.json``) it is done and reused; with an earlier epoch it is resumed from there (after
    a kill or a crash); without a checkpoint it starts. ``info`` has the epochs trained now and in all.
    """
    done = finished_run(cfg.run_dir, cfg.epochs)
    if done:
        return done, False, {"epochs": cfg.epochs, "epochs_now": 0}
    last = Path(cfg.run_dir) / "checkpoints" / "last.h5"
    done_epochs = read_checkpoint_info(last)["epoch"] if last.is_file() else 0
    resume_from = str(last) if last.is_file() else None
    summary = Trainer(cfg, resume_from).fit()
    return summary["checkpoint"], True, {"epochs": cfg.epochs, "epochs_now": cfg.epochs - done_epochs, **{
        k: summary[k] for k in ("best_val_loss", "steps_per_s") if k in summary}}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    cfg, resume_from = config_from_argv(argv)
    summary = Trainer(cfg, resume_from).fit()
    if int(os.environ.get("RANK", "0")) == 0:
        lines = [f"done: {summary['epochs']} epochs, best validation loss {summary['best_val_loss']:.4g}"]
        if "test_loss" in summary:
            lines.append(f"test loss {summary['test_loss']:.4g} on {summary['test_sources']} sources; anomaly scores: {summary['scores']}")
        if "steps_per_s" in summary:
            lines.append(f"throughput {summary['steps_per_s']:.0f} time steps/s")
        lines.append(f"best checkpoint: {summary['checkpoint']}")
        print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
