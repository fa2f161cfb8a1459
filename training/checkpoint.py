"""Checkpoints as plain HDF5 (h5py): weights, optimizer state, config, counters and RNG state.

No pickles: every tensor is a dataset, everything else JSON in attributes, so a checkpoint is
readable from any HDF5 tool. Files are written to a temporary name and renamed, so a crash
never leaves a half-written checkpoint under the real name. Every dataset carries the xxh3-64
checksum of its bytes (attribute ``xxh3``) and the file's attributes one of the JSON texts, so
a flipped bit anywhere in the weights, optimizer state or config is refused on load instead
of being trained or scored with.

This module owns the format. Reading the metadata (:func:`read_checkpoint_info`) needs no torch,
so the torch-free ``features`` package reads checkpoints through it too.

Layout::

    /attrs: format, format_version, config (JSON), architecture (JSON), epoch, step,
            best_val, wandb_id, meta_xxh3
    /model/<parameter name>                     float arrays  (attrs: xxh3)
    /optimizer/attrs: param_groups (JSON)
    /optimizer/state/<param index>/<key>        e.g. step, exp_avg, exp_avg_sq  (attrs: xxh3)
    /rng/torch_cpu, /rng/torch_cuda_<i>         uint8 generator states  (attrs: xxh3)
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import xxhash

from common.errors import UserError

FORMAT = "erosita-lcvae-checkpoint"
#: 2: checksums. Version 1 files (no checksums) are still read.
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
_META_KEYS = ("config", "architecture", "epoch", "step", "best_val", "wandb_id")


class CheckpointError(UserError):
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
    model_state: dict  # name -> torch.Tensor
    optimizer_state: dict
    rng: dict = field(default_factory=dict)  # name -> torch.Tensor (uint8)
    wandb_id: str = ""


def _digest(array: np.ndarray) -> str:
    return xxhash.xxh3_64_hexdigest(np.ascontiguousarray(array).tobytes())


def _meta_digest(attrs) -> str:
    return xxhash.xxh3_64_hexdigest("\n".join(str(attrs[k]) for k in _META_KEYS).encode())


def _dataset(group, name: str, data: np.ndarray):
    ds = group.create_dataset(name, data=data)
    ds.attrs["xxh3"] = _digest(np.asarray(data))
    return ds


def _read(ds, path, version: int) -> np.ndarray:
    """A dataset's array, its checksum verified (format 2)."""
    array = np.array(ds)
    if version >= 2 and ds.attrs.get("xxh3") != _digest(array):
        raise CheckpointError(path, f"checksum mismatch in {ds.name}: the file is damaged; use another checkpoint")
    return array


def save_checkpoint(path: str | Path, model, optimizer, config: dict,
                    epoch: int, step: int, best_val: float, wandb_id: str = "") -> Path:
    """Write a checkpoint atomically (temporary file, fsync, rename), every dataset checksummed."""
    import torch

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
            f.attrs["meta_xxh3"] = _meta_digest(f.attrs)
            weights = f.create_group("model")
            for name, tensor in model.state_dict().items():
                _dataset(weights, name, tensor.detach().cpu().numpy())
            opt = optimizer.state_dict()
            group = f.create_group("optimizer")
            group.attrs["param_groups"] = json.dumps(opt["param_groups"])
            state = group.create_group("state")
            for index, values in opt["state"].items():
                entry = state.create_group(str(index))
                for key, value in values.items():
                    data = value.detach().cpu().numpy() if torch.is_tensor(value) else np.asarray(value)
                    _dataset(entry, key, data)
            rng = f.create_group("rng")
            _dataset(rng, "torch_cpu", torch.get_rng_state().numpy())
            if torch.cuda.is_available():
                for i, s in enumerate(torch.cuda.get_rng_state_all()):
                    _dataset(rng, f"torch_cuda_{i}", s.numpy())
            f.flush()
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _open_checked(f, path) -> int:
    """Check the format and the metadata checksum of an open file; return its format version."""
    if f.attrs.get("format") != FORMAT:
        raise CheckpointError(path, "not a GRU-VAE checkpoint of this project")
    version = int(f.attrs["format_version"])
    if version not in READABLE_VERSIONS:
        raise CheckpointError(path, f"checkpoint format {version}, this code reads {READABLE_VERSIONS}")
    if version >= 2 and f.attrs.get("meta_xxh3") != _meta_digest(f.attrs):
        raise CheckpointError(path, "checksum mismatch in the config/counters: the file is damaged")
    return version


def read_checkpoint_info(path: str | Path) -> dict:
    """Config, architecture and counters of a checkpoint, without torch (checksums verified).

    Returns
    -------
    dict
        ``config``, ``architecture`` (dicts), ``epoch``, ``step``, ``best_val``, ``wandb_id``.

    Raises
    ------
    CheckpointError
        Missing, unreadable, not a checkpoint, or damaged.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "checkpoint file does not exist")
    try:
        with h5py.File(path, "r") as f:
            _open_checked(f, path)
            return {"config": json.loads(f.attrs["config"]), "architecture": json.loads(f.attrs["architecture"]),
                    "epoch": int(f.attrs["epoch"]), "step": int(f.attrs["step"]), "best_val": float(f.attrs["best_val"]),
                    "wandb_id": str(f.attrs.get("wandb_id", ""))}
    except (OSError, KeyError, ValueError) as exc:
        raise CheckpointError(path, f"not a readable checkpoint ({type(exc).__name__}: {exc})") from None


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint file, verifying every checksum.

    Raises
    ------
    CheckpointError
        Missing file, not HDF5, not a checkpoint of this project, or damaged (checksums).
    """
    import torch

    info = read_checkpoint_info(path)
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            version = _open_checked(f, path)
            model_state = {name: torch.from_numpy(_read(ds, path, version)) for name, ds in f["model"].items()}
            state = {}
            for index, entry in f["optimizer/state"].items():
                state[int(index)] = {key: torch.from_numpy(_read(ds, path, version)) for key, ds in entry.items()}
            groups = json.loads(f["optimizer"].attrs["param_groups"])
            rng = {name: torch.from_numpy(_read(ds, path, version)) for name, ds in f["rng"].items()}
    except (OSError, KeyError, ValueError) as exc:
        raise CheckpointError(path, f"not a readable checkpoint ({type(exc).__name__}: {exc})") from None
    return Checkpoint(path=str(path), config=info["config"], architecture=info["architecture"], epoch=info["epoch"],
                      step=info["step"], best_val=info["best_val"], model_state=model_state,
                      optimizer_state={"state": state, "param_groups": groups}, rng=rng, wandb_id=info["wandb_id"])


def restore(checkpoint: Checkpoint, model, optimizer=None, rng: bool = True) -> None:
    """Load weights (and optimizer and RNG state) into live objects.

    Raises
    ------
    CheckpointError
        When the checkpoint's architecture differs from ``model``'s.
    """
    import torch

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
