"""Training throughput in valid time steps per second, seed-style vs this project, same store.

    python benchmarks/train_throughput.py [--sizes 10000 100000] [--seconds 20] [--max-len 512] [--device auto]

(a) seed-style: every light curve held as three per-band pandas DataFrames, a map-style
    Dataset returning one light curve, a per-sample collate that stacks the 9 columns and pads
    to the longest of a random batch, ``pack_padded_sequence(enforce_sorted=False)`` in the
    encoder and an unmasked MSE over the padded tensor (seed model config, batch 32); run on the
    smallest store only (it must load everything into memory first);
(b) this project: BucketedLightCurves from the Zarr store -> DataLoader -> RNNVAE -> masked
    ELBO -> Adam step;
(c) the loader of (b) alone;
(b0) with ``--ablate-gru``: (b) with PyTorch's ``nn.GRU`` in place of ``training/gru.py``, to
    show what the CPU GRU kernel is worth (alternated with (a) and (b)).

(b) and (c) run in a fresh subprocess per store size so that peak RSS is per store: it must
not grow with the store. Targets on CPU: (b) >= 4x (a), (c) >= 10x (b).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from archives import ensure_store  # noqa: E402


def project(store: str, seconds: float, max_len: int, device: str, gru: str = "fused") -> dict:
    """(b) and (c) on one store; returns steps/s and peak RSS. ``gru="module"`` runs (b0)."""
    import torch
    from torch.utils.data import DataLoader

    from etl.store import open_store
    from training import model as model_module
    from training.data import BucketedLightCurves, select_sources
    from training.model import RNNVAE, batch_elbo, make_optimizer, pick_device
    from training.threads import tune_threads

    if gru == "module":  # the ablation: every GRU call goes to nn.GRU itself, as on CUDA
        from training.gru import run_module_gru

        model_module.run_gru = run_module_gru

    dev = pick_device(device)
    torch.manual_seed(0)
    sources = select_sources(open_store(store).catalog().collect(), "train")
    ds = BucketedLightCurves(store, sources, 32, max_len, seed=0)

    def loader_only():
        steps, t, epoch = 0, time.perf_counter(), 0
        while time.perf_counter() - t < seconds:
            ds.set_epoch(epoch)
            for batch in DataLoader(ds, batch_size=None):
                steps += int(batch["mask"].sum())
                if time.perf_counter() - t > seconds:
                    break
            epoch += 1
        return steps / (time.perf_counter() - t)

    model = RNNVAE().to(dev)
    opt = make_optimizer(model, 1e-5)
    threads = tune_threads(model, ds, 0.001)[0] if dev.type == "cpu" else torch.get_num_threads()  # as training.fit does

    def train():
        steps, t, epoch = 0, None, 0
        warm = 0
        while t is None or time.perf_counter() - t < seconds:
            ds.set_epoch(epoch)
            for batch in DataLoader(ds, batch_size=None, pin_memory=dev.type == "cuda"):
                recon, mu, logvar = model(batch["x"].to(dev, non_blocking=True), batch["lengths"].to(dev))
                out = batch_elbo(recon, mu, logvar, batch, dev, 0.001)
                opt.zero_grad(set_to_none=True)
                out["loss"].backward()
                opt.step()
                warm += 1
                if warm == 20:  # exclude warm-up (cuDNN autotuning, first chunk reads)
                    if dev.type == "cuda":
                        torch.cuda.synchronize()
                    t, steps = time.perf_counter(), 0
                    continue
                steps += int(batch["mask"].sum())
                if t is not None and time.perf_counter() - t > seconds:
                    break
            epoch += 1
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return steps / (time.perf_counter() - t)

    loader = loader_only() if gru == "fused" else float("nan")
    trained = train()
    return {"device": str(dev), "sources": len(sources), "padding": ds.padding_fraction(), "train_steps_per_s": trained,
            "loader_steps_per_s": loader, "threads": threads, "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def seed_style(store: str, seconds: float, max_len: int) -> dict:
    """(a): per-band pandas DataFrames, random batches padded to the longest, packing, unmasked MSE."""
    import numpy as np
    import pandas as pd
    import torch
    from torch import nn
    from torch.nn.utils.rnn import pack_padded_sequence
    from torch.utils.data import DataLoader, Dataset

    from etl.store import open_store
    from training.data import select_sources

    st = open_store(store)
    sources = select_sources(st.catalog().collect(), "train")
    t_load = time.perf_counter()
    curves = []
    for i in range(0, len(sources), 512):
        batch = st.read_many(sources.source_ids[i : i + 512], columns=["time", "rate", "rate_errm", "rate_errp"])
        for j in range(len(batch)):
            c = batch[j]
            curves.append([pd.DataFrame({"TIME": c["time"], "RATE": c["rate"][:, b], "RATE_ERRM": c["rate_errm"][:, b],
                                         "RATE_ERRP": c["rate_errp"][:, b]}) for b in range(3)])
    load_s = time.perf_counter() - t_load

    class LightCurves(Dataset):
        def __len__(self):
            return len(curves)

        def __getitem__(self, i):
            bands = curves[i]
            cols = [bands[b][name].to_numpy() for name in ("RATE", "RATE_ERRM", "RATE_ERRP") for b in range(3)]
            x = torch.tensor(np.stack(cols, axis=1)[:max_len], dtype=torch.float32)
            return x

    def collate(samples):
        lengths = torch.tensor([len(s) for s in samples])
        out = torch.zeros(len(samples), int(lengths.max()), 9)
        for k, s in enumerate(samples):
            out[k, : len(s)] = s
        return out, lengths

    class SeedVAE(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.GRU(9, 64, 2, batch_first=True, dropout=0.2)
            self.mu, self.logvar = nn.Linear(64, 40), nn.Linear(64, 40)
            self.l2h = nn.Linear(40, 128)
            self.decoder = nn.GRU(40, 64, 2, batch_first=True, dropout=0.2)
            self.head = nn.Linear(64, 3)

        def forward(self, x, lengths):
            packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            _, h = self.encoder(packed)
            mu, logvar = self.mu(h[-1]), self.logvar(h[-1])
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
            h0 = torch.tanh(self.l2h(z)).view(-1, 2, 64).transpose(0, 1).contiguous()
            out, _ = self.decoder(z.unsqueeze(1).expand(-1, x.shape[1], -1), h0)
            return torch.exp(self.head(out)), mu, logvar

    torch.manual_seed(0)
    model = SeedVAE()
    opt = torch.optim.Adam(model.parameters(), lr=1e-5)
    loader = DataLoader(LightCurves(), batch_size=32, shuffle=True, collate_fn=collate)
    steps, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds:
        for x, lengths in loader:
            recon, mu, logvar = model(x, lengths)
            mse = ((recon - x[..., :3]) ** 2).sum()  # unmasked: padding counts too
            kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum()
            opt.zero_grad()
            (mse + 0.001 * kl).backward()
            opt.step()
            steps += int(lengths.sum())
            if time.perf_counter() - t > seconds:
                break
    return {"train_steps_per_s": steps / (time.perf_counter() - t), "load_s": load_s,
            "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def median_run(runs: list[dict]) -> dict:
    """The run with the median throughput (the upper one of an even count)."""
    return sorted(runs, key=lambda r: r["train_steps_per_s"])[len(runs) // 2]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--max-len", type=int, default=512)
    p.add_argument("--device", default="auto")
    p.add_argument("--repeat", type=int, default=3, help="alternate (a) and (b) this often on the smallest store; medians are reported")
    p.add_argument("--ablate-gru", action="store_true", help="also time (b) with nn.GRU instead of training/gru.py")
    p.add_argument("--dir", type=Path, default=Path("/tmp/bench-train"))
    p.add_argument("--child", nargs=2, metavar=("KIND", "STORE"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        kind, store = args.child
        if kind == "seed":
            result = seed_style(store, args.seconds, args.max_len)
        else:
            result = project(store, args.seconds, args.max_len, args.device, gru="module" if kind == "project-nngru" else "fused")
        print(json.dumps(result))
        return
    args.dir.mkdir(parents=True, exist_ok=True)
    stores = {n: str(ensure_store(args.dir, n, seed=3)) for n in args.sizes}

    def child(kind, store):
        cmd = [sys.executable, __file__, "--child", kind, store, "--seconds", str(args.seconds), "--max-len", str(args.max_len), "--device", args.device]
        return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])

    smallest = min(args.sizes)
    # The machine is shared: alternate the two pipelines and report medians.
    seeds, projects, ablated = [], [], []
    for _ in range(args.repeat):
        seeds.append(child("seed", stores[smallest]))
        projects.append(child("project", stores[smallest]))
        if args.ablate_gru:
            ablated.append(child("project-nngru", stores[smallest]))
    ratios = sorted(p["train_steps_per_s"] / s["train_steps_per_s"] for s, p in zip(seeds, projects))
    seed = median_run(seeds)
    results = {smallest: median_run(projects)}
    results.update({n: child("project", stores[n]) for n in args.sizes if n != smallest})
    ref = results[smallest]
    print(f"device {ref['device']}; valid time steps per second; max_len {args.max_len}; {args.seconds:.0f} s per measurement")
    print(f"(a) seed-style, {smallest} sources      : {seed['train_steps_per_s']:10.0f}   (pandas load {seed['load_s']:.1f} s, peak RSS {seed['rss_mib']:.0f} MiB)")
    for n, r in results.items():
        print(f"(b) project train, {n:>6} sources : {r['train_steps_per_s']:10.0f}   padding {r['padding']:.2%}, peak RSS {r['rss_mib']:.0f} MiB, "
              f"{r['threads']} CPU thread(s)")
        print(f"(c) project loader, {n:>6} sources: {r['loader_steps_per_s']:10.0f}")
    if ablated:
        gru_ratios = sorted(p["train_steps_per_s"] / b["train_steps_per_s"] for b, p in zip(ablated, projects))
        b0 = median_run(ablated)
        print(f"(b0) project train with nn.GRU   : {b0['train_steps_per_s']:10.0f}   (b)/(b0) per run: {', '.join(f'{r:.2f}x' for r in gru_ratios)}")
    print(f"(b)/(a) per alternating pair: {', '.join(f'{r:.1f}x' for r in ratios)}")
    print(f"(b)/(a) = {ref['train_steps_per_s'] / seed['train_steps_per_s']:.1f}x (medians; target >= 4x);  "
          f"(c)/(b) = {ref['loader_steps_per_s'] / ref['train_steps_per_s']:.1f}x (target >= 10x)")


if __name__ == "__main__":
    main()
