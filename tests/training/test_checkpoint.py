"""HDF5 checkpoints: round trip, no pickles, atomic writes, architecture checks."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from training.checkpoint import CheckpointError, find_checkpoint, load_checkpoint, restore, save_checkpoint
from training.model import RNNVAE


def trained(seed=0):
    torch.manual_seed(seed)
    model = RNNVAE(hidden=16, latent=8)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(3):
        recon, mu, logvar = model(torch.randn(4, 5, 9), torch.tensor([5, 5, 4, 2]))
        opt.zero_grad()
        (recon.sum() + mu.pow(2).sum()).backward()
        opt.step()
    return model, opt


def test_round_trip(tmp_path):
    model, opt = trained()
    torch.manual_seed(123)
    path = save_checkpoint(tmp_path / "c.h5", model, opt, {"lr": 1e-3, "store": "s"}, epoch=7, step=21, best_val=1.5, wandb_id="abc")
    expected_next = torch.rand(3)
    ckpt = load_checkpoint(path)
    assert (ckpt.epoch, ckpt.step, ckpt.best_val, ckpt.wandb_id) == (7, 21, 1.5, "abc")
    assert ckpt.config == {"lr": 1e-3, "store": "s"}
    model2 = RNNVAE(hidden=16, latent=8)
    opt2 = torch.optim.Adam(model2.parameters(), lr=1e-3)
    restore(ckpt, model2, opt2)
    for a, b in zip(model.state_dict().values(), model2.state_dict().values()):
        torch.testing.assert_close(a, b)
    s1, s2 = opt.state_dict(), opt2.state_dict()
    for k in s1["state"]:
        for key in s1["state"][k]:
            torch.testing.assert_close(s1["state"][k][key], s2["state"][k][key])
    assert s1["param_groups"][0]["lr"] == s2["param_groups"][0]["lr"]
    torch.testing.assert_close(torch.rand(3), expected_next)  # RNG restored to the save point


def test_plain_hdf5_without_pickles(tmp_path):
    model, opt = trained()
    path = save_checkpoint(tmp_path / "c.h5", model, opt, {}, 1, 1, 0.0)
    kinds = []
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: kinds.append(obj.dtype.kind) if isinstance(obj, h5py.Dataset) else None)
        assert "encoder.weight_ih_l0" in f["model"]
    assert kinds and set(kinds) <= {"f", "i", "u", "b"}  # numbers only: no object/opaque (pickled) data
    assert not list(tmp_path.glob("*.partial"))


def test_architecture_mismatch(tmp_path):
    model, opt = trained()
    path = save_checkpoint(tmp_path / "c.h5", model, opt, {}, 1, 1, 0.0)
    with pytest.raises(CheckpointError, match="architecture"):
        restore(load_checkpoint(path), RNNVAE(hidden=32, latent=8))


def test_bad_files(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "none.h5")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "junk.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(CheckpointError, match="not a GRU-VAE checkpoint"):
        load_checkpoint(tmp_path / "other.h5")
    with pytest.raises(CheckpointError, match="no checkpoint to resume"):
        find_checkpoint(tmp_path)


def _flip_bit(path, dataset: str, byte: int = 1, bit: int = 6):
    with h5py.File(path, "r") as f:
        offset = f[dataset].id.get_offset()
    with open(path, "r+b") as fh:
        fh.seek(offset + byte)
        value = fh.read(1)[0]
        fh.seek(offset + byte)
        fh.write(bytes([value ^ (1 << bit)]))


@pytest.mark.parametrize("dataset", ["model/head.weight", "optimizer/state/0/exp_avg", "rng/torch_cpu"])
def test_a_flipped_bit_is_refused(tmp_path, dataset):
    """One flipped bit in a checkpoint fails its checksum: refused with the dataset's name."""
    model, opt = trained()
    path = save_checkpoint(tmp_path / "c.h5", model, opt, {"lr": 1e-3}, epoch=1, step=3, best_val=1.0)
    load_checkpoint(path)
    _flip_bit(path, dataset)
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        load_checkpoint(path)


def test_damaged_config_is_refused_and_info_needs_no_torch(tmp_path):
    from training.checkpoint import read_checkpoint_info

    model, opt = trained()
    path = save_checkpoint(tmp_path / "c.h5", model, opt, {"lr": 1e-3}, epoch=1, step=3, best_val=1.0)
    assert read_checkpoint_info(path)["config"] == {"lr": 1e-3}
    with h5py.File(path, "r+") as f:
        f.attrs["config"] = '{"lr": 1.0}'
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        read_checkpoint_info(path)
