"""Model and masked ELBO."""

from __future__ import annotations

import torch

from training.model import RNNVAE, masked_elbo


def test_shapes_and_positive_output():
    torch.manual_seed(0)
    model = RNNVAE()
    x = torch.randn(5, 11, 9)
    recon, mu, logvar = model(x, torch.tensor([11, 9, 5, 3, 1]))
    assert recon.shape == (5, 11, 3) and mu.shape == (5, 40) and logvar.shape == (5, 40)
    assert (recon > 0).all()
    # the seed's architecture, counted: 2-layer GRUs of 64 (9 inputs -> encoder, 40 latents -> decoder),
    # mu and logvar heads, the latent's projection to both decoder layers' initial states, the rate head
    gru = lambda i, h: 3 * h * (i + h) + 6 * h  # noqa: E731 - weights and both biases of one nn.GRU layer
    expected = (gru(9, 64) + gru(64, 64)) + 2 * (64 * 40 + 40) + (40 * 128 + 128) + (gru(40, 64) + gru(64, 64)) + (64 * 3 + 3)
    assert sum(p.numel() for p in model.parameters()) == expected


def test_encoding_ignores_padding():
    torch.manual_seed(0)
    model = RNNVAE().eval()
    x = torch.randn(1, 6, 9)
    padded = torch.cat([x, 1e3 * torch.randn(1, 4, 9)], dim=1)
    mu1, _ = model.encode(x, torch.tensor([6]))
    mu2, _ = model.encode(padded, torch.tensor([6]))
    torch.testing.assert_close(mu1, mu2)


def test_masked_loss_counts_valid_elements_only():
    recon = torch.full((2, 3, 3), 2.0)
    target = torch.ones(2, 3, 3)
    target[1, 2] = float("nan")  # padding / non-finite with garbage
    mask = torch.ones(2, 3, 3, dtype=torch.bool)
    mask[1, 2] = False
    mu, logvar = torch.zeros(2, 4), torch.zeros(2, 4)
    out = masked_elbo(recon, target, mask, mu, logvar, kld_coef=0.5)
    assert out["recon"] == 15.0  # 9 + 6 valid elements, each (2-1)^2
    assert out["kl"] == 0.0
    assert out["loss"] == 7.5
    assert out["per_source_count"].tolist() == [9, 6]
    mu = torch.ones(2, 4)
    out = masked_elbo(recon, target, mask, mu, logvar, kld_coef=0.5)
    assert torch.isclose(out["kl"], torch.tensor(4.0))  # 0.5 * sum(mu^2) over 2 x 4
    assert torch.isclose(out["loss"], torch.tensor((15 + 0.5 * 4) / 2))


def test_gradients_are_finite_with_nan_targets():
    model = RNNVAE()
    x = torch.randn(2, 4, 9)
    target = torch.rand(2, 4, 3)
    target[0, 1, 1] = float("nan")
    mask = torch.isfinite(target)
    recon, mu, logvar = model(x, torch.tensor([4, 4]))
    masked_elbo(recon, target, mask, mu, logvar, 0.001)["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_chi2_loss_divides_by_errors_and_drops_zero_errors():
    recon = torch.full((1, 2, 3), 3.0)
    target = torch.ones(1, 2, 3)
    mask = torch.ones(1, 2, 3, dtype=torch.bool)
    sigma = torch.full((1, 2, 3), 2.0)
    sigma[0, 1, 2] = 0.0  # unusable error: left out
    zeros = torch.zeros(1, 4)
    out = masked_elbo(recon, target, mask, zeros, zeros, 0.0, sigma=sigma)
    assert out["recon"] == 5.0  # five elements, each ((3 - 1) / 2)^2 = 1
    assert out["per_source_count"].tolist() == [5]


def test_cpu_gru_path_gives_the_nn_gru_model(monkeypatch):
    """The model through training/gru.py equals the same weights through nn.GRU (the CUDA path)."""
    import training.model as model_module
    from training.gru import run_module_gru

    torch.manual_seed(3)
    model = RNNVAE().eval()
    x, lengths = torch.randn(6, 13, 9), torch.tensor([13, 12, 9, 5, 2, 1])
    ours = model(x, lengths)
    monkeypatch.setattr(model_module, "run_gru", run_module_gru)
    for a, b in zip(ours, model(x, lengths)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_conditioned_model_shapes_and_seed_architecture_unchanged():
    seed = RNNVAE(9, 3, hidden=16, layers=2, latent=4)
    assert set(seed.architecture()) == {"input_size", "output_size", "hidden", "layers", "latent"}  # old checkpoints load
    model = RNNVAE(11, 3, hidden=16, layers=2, latent=4, cond_size=6, step_size=2)
    assert model.architecture() | {} == {"input_size": 11, "output_size": 3, "hidden": 16, "layers": 2, "latent": 4,
                                        "cond_size": 6, "step_size": 2}
    x, cond, steps = torch.randn(5, 7, 11), torch.randn(5, 6), torch.randn(5, 7, 2)
    recon, mu, logvar = model(x, torch.tensor([7, 6, 5, 4, 3]), cond, steps)
    assert recon.shape == (5, 7, 3) and mu.shape == (5, 4) and (recon > 0).all()
    model.eval()
    other = model(x, torch.tensor([7, 6, 5, 4, 3]), cond + 1.0, steps)[0]
    assert not torch.allclose(model(x, torch.tensor([7, 6, 5, 4, 3]), cond, steps)[0], other)  # the decoder reads the conditioning


def test_hide_band_zeroes_one_band_and_its_flag():
    from training.data import hide_band

    k = 3
    x = torch.arange(2 * 4 * (3 * k + 2), dtype=torch.float32).reshape(2, 4, 3 * k + 2) + 1
    cond = torch.ones(2, 2 * k)
    xh, ch = hide_band(x, cond, torch.tensor([1, -1]))
    assert torch.all(xh[0, :, [1, k + 1, 2 * k + 1]] == 0) and torch.all(ch[0] == torch.tensor([1, 1, 1, 1, 0, 1.0]))
    keep = [c for c in range(3 * k + 2) if c not in (1, k + 1, 2 * k + 1)]
    assert torch.equal(xh[0, :, keep], x[0, :, keep]) and torch.equal(xh[1], x[1]) and torch.equal(ch[1], cond[1])
    assert torch.all(x > 0) and torch.all(cond == 1)  # the inputs themselves are left alone
