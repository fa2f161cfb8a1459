"""Checkpoints as plain HDF5 (h5py): weights, optimizer state, config, counters and RNG state.

No pickles: every tensor is a dataset, everything else JSON in attributes, so a checkpoint is
readable from any HDF5 tool. Files are written to a temporary name and renamed, so a crash
never leaves a half-written checkpoint under the real name.

Layout::

    /attrs: format, format_version, config (JSON), architecture (JSON), epoch, step,
            best_val, wandb_id
    /model/<parameter name>                     float arrays
    /optimizer/attrs: param_groups (JSON)
    /optimizer/state/<param index>/<key>        e.g. step, exp_avg, exp_avg_sq
    /rng/torch_cpu, /rng/torch_cuda_<i>         uint8 generator states
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import torch

FORMAT = "erosita-lcvae-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(Exception):
    """A checkpoint is missing, unreadable or does not fit the model."""

    def __init__(self, path, message: str):
        self.path = str(path)
        super().__init__(f"{self.path}: {message}")


@dataclass
class Checkpoint:
    """The content of a checkpoint file."""

    path: str
    config: dict
    architecture: dict
    epoch: int
    step: int
    best_val: float
    model_state: dict[str, torch.Tensor]
    optimizer_state: dict
    rng: dict[str, torch.Tensor] = field(default_factory=dict)
    wandb_id: str = ""


def save_checkpoint(path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, config: dict,
                    epoch: int, step: int, best_val: float, wandb_id: str = "") -> Path:
    """Write a checkpoint atomically (temporary file, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["config"] = json.dumps(config)
            f.attrs["architecture"] = json.dumps(model.architecture())
            f.attrs["epoch"] = int(epoch)
            f.attrs["step"] = int(step)
            f.attrs["best_val"] = float(best_val)
            f.attrs["wandb_id"] = wandb_id
            weights = f.create_group("model")
            for name, tensor in model.state_dict().items():
                weights.create_dataset(name, data=tensor.detach().cpu().numpy())
            opt = optimizer.state_dict()
            group = f.create_group("optimizer")
            group.attrs["param_groups"] = json.dumps(opt["param_groups"])
            state = group.create_group("state")
            for index, values in opt["state"].items():
                entry = state.create_group(str(index))
                for key, value in values.items():
                    data = value.detach().cpu().numpy() if torch.is_tensor(value) else np.asarray(value)
                    entry.create_dataset(key, data=data)
            rng = f.create_group("rng")
            rng.create_dataset("torch_cpu", data=torch.get_rng_state().numpy())
            if torch.cuda.is_available():
                for i, s in enumerate(torch.cuda.get_rng_state_all()):
                    rng.create_dataset(f"torch_cuda_{i}", data=s.numpy())
            f.flush()
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint file.

    Raises
    ------
    CheckpointError
        Missing file, not HDF5, or not a checkpoint of this project.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "checkpoint file does not exist")
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != FORMAT:
                raise CheckpointError(path, "not a GRU-VAE checkpoint of this project")
            if int(f.attrs["format_version"]) != FORMAT_VERSION:
                raise CheckpointError(path, f"checkpoint format {f.attrs['format_version']}, this code reads {FORMAT_VERSION}")
            model_state = {name: torch.from_numpy(np.array(ds)) for name, ds in f["model"].items()}
            state = {}
            for index, entry in f["optimizer/state"].items():
                state[int(index)] = {key: torch.from_numpy(np.array(ds)) for key, ds in entry.items()}
            groups = json.loads(f["optimizer"].attrs["param_groups"])
            rng = {name: torch.from_numpy(np.array(ds)) for name, ds in f["rng"].items()}
            return Checkpoint(
                path=str(path),
                config=json.loads(f.attrs["config"]),
                architecture=json.loads(f.attrs["architecture"]),
                epoch=int(f.attrs["epoch"]),
                step=int(f.attrs["step"]),
                best_val=float(f.attrs["best_val"]),
                model_state=model_state,
                optimizer_state={"state": state, "param_groups": groups},
                rng=rng,
                wandb_id=str(f.attrs.get("wandb_id", "")),
            )
    except OSError as exc:
        raise CheckpointError(path, f"not a readable HDF5 file ({exc})") from None


def restore(checkpoint: Checkpoint, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None,
            rng: bool = True) -> None:
    """Load weights (and optimizer and RNG state) into live objects.

    Raises
    ------
    CheckpointError
        When the checkpoint's architecture differs from ``model``'s.
    """
    if checkpoint.architecture != model.architecture():
        raise CheckpointError(checkpoint.path, f"architecture {checkpoint.architecture} does not match the model's {model.architecture()}")
    model.load_state_dict(checkpoint.model_state)
    if optimizer is not None:
        optimizer.load_state_dict(checkpoint.optimizer_state)
    if rng and "torch_cpu" in checkpoint.rng:
        torch.set_rng_state(checkpoint.rng["torch_cpu"])
        cuda = [checkpoint.rng[k] for k in sorted(checkpoint.rng) if k.startswith("torch_cuda_")]
        if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)


def find_checkpoint(run_or_file: str | Path) -> Path:
    """``--resume`` accepts a run directory (its ``checkpoints/last.h5``) or an .h5 file."""
    p = Path(run_or_file)
    if p.is_dir():
        p = p / "checkpoints" / "last.h5"
    if not p.is_file():
        raise CheckpointError(p, "no checkpoint to resume from")
    return p
