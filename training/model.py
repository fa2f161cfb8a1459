"""The seed's recurrent VAE, with a masked ELBO, and its conditioned form for discovery.

Shape legend: B = batch, T = time steps, K = energy bands, F = input features (3K: 9 for
eRASS1's three bands), O = reconstructed features (K band rates, or 3K), H = GRU hidden size,
L = latent size, C = conditioning inputs (K band scales and K observed flags, or 0), S = per-step decoder inputs
(the 2 time inputs, or 0).
"""

from __future__ import annotations

import torch
from torch import nn

from training.gru import run_gru

#: exp() of a pre-activation above this overflows half precision; clamping keeps AMP safe.
MAX_LOG_OUTPUT = 11.0


class RNNVAE(nn.Module):
    """GRU encoder -> (mu, logvar) -> reparameterised z -> GRU decoder -> exp() output.

    Parameters
    ----------
    input_size : int
        F, features per step (3K).
    output_size : int
        O, reconstructed features per step (K or 3K).
    hidden, layers, dropout : int, int, float
        GRU size, depth and inter-layer dropout (seed: 64, 2, 0.2).
    latent : int
        L (seed: 40).
    cond_size : int
        C: conditioning inputs given to the encoder at every step and to the decoder (its initial
        state and every step): the band scales with ``condition = "band_mean"``, 0 for the seed.
    step_size : int
        S: per-step decoder inputs besides the latent (the time inputs with ``decoder_time``).
    """

    def __init__(self, input_size: int = 9, output_size: int = 3, hidden: int = 64, layers: int = 2,
                 dropout: float = 0.2, latent: int = 40, cond_size: int = 0, step_size: int = 0):
        super().__init__()
        self.hidden, self.layers, self.latent = hidden, layers, latent
        self.cond_size, self.step_size = cond_size, step_size
        gru_dropout = dropout if layers > 1 else 0.0
        self.encoder = nn.GRU(input_size + cond_size, hidden, layers, batch_first=True, dropout=gru_dropout)
        self.to_mu = nn.Linear(hidden, latent)
        self.to_logvar = nn.Linear(hidden, latent)
        self.latent_to_hidden = nn.Linear(latent + cond_size, hidden * layers)
        self.decoder = nn.GRU(latent + cond_size + step_size, hidden, layers, batch_first=True, dropout=gru_dropout)
        self.head = nn.Linear(hidden, output_size)

    def encode(self, x: torch.Tensor, lengths: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode (B, T, F) inputs (and (B, C) conditioning) to mu, logvar (B, L).

        The summary is the top layer's output at each sequence's last real step. A GRU is
        causal, so padding after a sequence's end cannot change it, and batches of nearly
        equal length need no packing.
        """
        if self.cond_size:
            x = torch.cat([x, cond[:, None, :].expand(-1, x.shape[1], -1)], dim=-1)
        out = run_gru(self.encoder, x.transpose(0, 1))  # a view: the module path on CUDA turns it back; (T, B, H)
        last = (lengths - 1).clamp(min=0).to(out.device)
        summary = out[last, torch.arange(out.shape[1], device=out.device)]
        return self.to_mu(summary), self.to_logvar(summary)

    def reparameterize(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """z = mu + eps * sigma while training; mu in eval mode."""
        if not self.training:
            return mu
        return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)

    def decode(self, z: torch.Tensor, steps: int, cond: torch.Tensor | None = None,
               step_inputs: torch.Tensor | None = None) -> torch.Tensor:
        """Decode (B, L) latents (and (B, C) conditioning, (B, T, S) step inputs) to (B, T, O) positive outputs.

        z (with the conditioning) initialises the hidden state and is the input at every step.
        """
        if self.cond_size:
            z = torch.cat([z, cond], dim=-1)
        h0 = torch.tanh(self.latent_to_hidden(z)).view(z.shape[0], self.layers, self.hidden).transpose(0, 1).contiguous()
        if self.step_size:
            inputs = torch.cat([z[None].expand(steps, -1, -1), step_inputs.transpose(0, 1)], dim=-1)  # (T, B, L + C + S)
            out = run_gru(self.decoder, inputs, h0)
        else:
            out = run_gru(self.decoder, z, h0, steps=steps)  # the same input at every step: projected once; (T, B, H)
        return torch.exp(self.head(out).float().clamp(max=MAX_LOG_OUTPUT)).transpose(0, 1)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, cond: torch.Tensor | None = None,
                step_inputs: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return reconstruction (B, T, O), mu (B, L), logvar (B, L)."""
        mu, logvar = self.encode(x, lengths, cond)
        z = self.reparameterize(mu, logvar)
        return self.decode(z, x.shape[1], cond, step_inputs), mu, logvar

    def architecture(self) -> dict:
        """What a checkpoint must match to be loaded into this model."""
        arch = {
            "input_size": self.encoder.input_size - self.cond_size,
            "output_size": self.head.out_features,
            "hidden": self.hidden,
            "layers": self.layers,
            "latent": self.latent,
        }
        if self.cond_size or self.step_size:  # only then: the seed's checkpoints keep loading
            arch |= {"cond_size": self.cond_size, "step_size": self.step_size}
        return arch


def build_model(cfg, n_bands: int) -> RNNVAE:
    """The model a training config describes, for a store of ``n_bands`` energy bands."""
    from training.data import N_TIME_INPUTS, conditioning_width, input_width, output_width

    cond = conditioning_width(n_bands, cfg.condition)
    steps = N_TIME_INPUTS if cfg.decoder_time else 0
    return RNNVAE(input_width(n_bands, cfg.time_inputs), output_width(n_bands, cfg.target), cfg.hidden, cfg.layers,
                  cfg.dropout, cfg.latent, cond, steps)


def pick_device(device: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto``: CUDA (this rank's GPU) when present, else the CPU; anything else as torch spells it."""
    if device == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_model(checkpoint: str, store=None, device: str | torch.device = "cpu"):
    """The model a checkpoint holds, in eval mode, with its training config: ``(model, cfg)``.

    With ``store``, a checkpoint trained on another number of energy bands than the store has is
    refused (:class:`~training.checkpoint.CheckpointError`). The one loader of the evaluation, the
    feature sets and the explorer's overlay.
    """
    from training.checkpoint import load_checkpoint, restore
    from training.config import config_from_dict

    ckpt = load_checkpoint(checkpoint)
    cfg = config_from_dict(ckpt.config)
    n_bands = architecture_bands(ckpt.architecture)
    if store is not None:
        check_bands(ckpt, store)
    model = build_model(cfg, n_bands).to(device)
    restore(ckpt, model, rng=False)
    model.eval()
    return model, cfg


def check_bands(ckpt, store) -> None:
    """Refuse a checkpoint trained on another number of energy bands than the store has."""
    from training.checkpoint import CheckpointError

    trained = architecture_bands(ckpt.architecture)
    if trained != len(store.e_min):
        bands = ", ".join(f"{lo:g}-{hi:g}" for lo, hi in zip(store.e_min, store.e_max))
        raise CheckpointError(ckpt.path, f"the model was trained on a {trained}-band store; {store.url} has "
                                         f"{len(store.e_min)} bands ({bands} keV)")


def architecture_bands(architecture: dict) -> int:
    """Energy bands of the store a model of this architecture was built for (3 inputs a band, plus 0 or 2 time inputs)."""
    return int(architecture["input_size"]) // 3


def masked_elbo(recon: torch.Tensor, target: torch.Tensor, target_mask: torch.Tensor, mu: torch.Tensor,
                logvar: torch.Tensor, kld_coef: float, sigma: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The seed's ELBO, masked: squared error summed over valid, finite elements only.

    Parameters
    ----------
    recon, target : Tensor, shape (B, T, O)
    target_mask : Tensor of bool, shape (B, T, O)
        False on padding and on non-finite measurements; those never reach the sum, even
        when ``target`` holds NaN there (``torch.where``, not multiplication).
    mu, logvar : Tensor, shape (B, L)
    kld_coef : float
        Weight of the KL term.
    sigma : Tensor, shape (B, T, O), optional
        Measurement errors in the target's units: the squared error becomes chi2,
        ((recon - target) / sigma)^2, and elements with sigma <= 0 are left out.

    Returns
    -------
    dict
        ``loss`` (mean over the batch of recon + kld_coef * kl, per light curve), ``recon`` (the
        reconstruction term: squared error or chi2) and ``kl`` (batch sums), ``per_source_recon``
        (B,) and ``per_source_count`` (B,) valid elements.
    """
    zero = torch.zeros((), device=recon.device)
    if sigma is not None:
        target_mask = target_mask & (sigma > 0)
    diff = torch.where(target_mask, recon.float() - target.float(), zero)
    if sigma is not None:
        diff = diff / torch.where(target_mask, sigma.float(), torch.ones((), device=recon.device))
    return _elbo((diff * diff).sum(dim=(1, 2)), target_mask, mu, logvar, kld_coef)


def _elbo(per_source: torch.Tensor, valid: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, kld_coef: float) -> dict:
    """Batch ELBO from per-source reconstruction terms (B,), the valid-element mask and the latents."""
    kl = -0.5 * (1 + logvar.float() - mu.float().pow(2) - logvar.float().exp()).sum(dim=1)
    batch = max(per_source.shape[0], 1)
    return {
        "loss": (per_source.sum() + kld_coef * kl.sum()) / batch,
        "recon": per_source.sum(),
        "kl": kl.sum(),
        "per_source_recon": per_source.detach(),
        "per_source_count": valid.sum(dim=(1, 2)).detach(),
    }


def poisson_elbo(recon: torch.Tensor, scale: torch.Tensor, counts: torch.Tensor, background: torch.Tensor,
                 exposure: torch.Tensor, count_mask: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
                 kld_coef: float) -> dict[str, torch.Tensor]:
    """ELBO with the Poisson likelihood of the observed counts (``--loss poisson``).

    The decoder's positive output is the source rate of each band in units of the source's
    scale ``s``; the expected source-aperture counts are (Cash 1979; the eSASS rate model)

        m = recon x s x exposure + background,   exposure = TIMEDEL x FRACEXP,
                                                 background = BACK_COUNTS x BACKRATIO

    and the reconstruction term is the Poisson negative log-likelihood
    ``sum (m - C log m + log C!)`` over usable bins only (``torch.where``: padding and unusable
    bins never reach the sum).

    Parameters
    ----------
    recon : Tensor, shape (B, T, K)
    scale : Tensor, shape (B,) or (B, K)
        The source's scale, or each band's (``condition = "band_mean"``).
    counts, background, exposure : Tensor, shape (B, T, K)
    count_mask : Tensor of bool, shape (B, T, K)
    mu, logvar : Tensor, shape (B, L)

    Returns
    -------
    dict
        As :func:`masked_elbo` (``recon`` holds the negative log-likelihood), plus
        ``per_source_deviance`` (B,): the Poisson deviance ``2 sum (C log(C / m) - (C - m))``,
        whose mean per bin is the anomaly score (about 1 per bin for a good fit, whatever the
        brightness and length).
    """
    m = expected_counts(recon, scale, background, exposure, count_mask)
    c = torch.where(count_mask, counts.float(), torch.zeros((), device=recon.device))
    nll = torch.where(count_mask, m - c * torch.log(m) + torch.lgamma(c + 1), torch.zeros((), device=recon.device))
    with torch.no_grad():
        deviance = poisson_deviance(c, m, count_mask).sum(dim=(1, 2))
    return _elbo(nll.sum(dim=(1, 2)), count_mask, mu, logvar, kld_coef) | {"per_source_deviance": deviance}


def per_step(scale):
    """A source's scale (B,) or its bands' (B, K), array or tensor, shaped to multiply (B, T, K) values."""
    return scale[:, None, :] if scale.ndim == 2 else scale[:, None, None]


def expected_counts(recon: torch.Tensor, scale: torch.Tensor, background: torch.Tensor, exposure: torch.Tensor,
                    count_mask: torch.Tensor) -> torch.Tensor:
    """Expected source-aperture counts (B, T, K) ``recon x s x exposure + background``; 1 where not usable.

    ``scale`` is (B,) (one per source) or (B, K) (per band, ``condition = "band_mean"``).
    """
    k = exposure.shape[-1]
    expected = recon[..., :k].float() * per_step(scale.float()) * exposure.float() + background.float()
    return torch.where(count_mask, expected.clamp(min=1e-8), torch.ones((), device=recon.device))


def poisson_deviance(counts: torch.Tensor, expected: torch.Tensor, count_mask: torch.Tensor) -> torch.Tensor:
    """Element-wise Poisson deviance ``2 (C log(C / m) - (C - m))`` (B, T, K), 0 where not usable."""
    one, zero = torch.ones((), device=counts.device), torch.zeros((), device=counts.device)
    c = torch.where(count_mask, counts.float(), zero)
    c_log = torch.where(c > 0, c * torch.log(torch.where(c > 0, c, one) / expected), zero)
    return torch.where(count_mask, 2 * (c_log - (c - expected)), zero)


def batch_elbo(recon: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, batch: dict, device: torch.device,
               kld_coef: float, loss: str = "mse") -> dict[str, torch.Tensor]:
    """The ELBO of a batch from :class:`training.data.BucketedLightCurves`.

    ``loss="chi2"`` weights the residuals by the rate errors (``batch["sigma"]``, target
    ``rates`` only); ``"poisson"`` is :func:`poisson_elbo` on the counts; ``"mse"`` is the
    seed's loss.
    """
    if loss == "poisson":
        return poisson_elbo(recon, batch["scale"].to(device), batch["counts"].to(device), batch["background"].to(device),
                            batch["exposure"].to(device), batch["count_mask"].to(device), mu, logvar, kld_coef)
    sigma = batch["sigma"].to(device) if loss == "chi2" else None
    return masked_elbo(recon, batch["y"].to(device), batch["target_mask"].to(device), mu, logvar, kld_coef, sigma)


def make_optimizer(model: nn.Module, lr: float) -> torch.optim.Optimizer:
    """Adam, fused into one kernel per step where PyTorch supports it (~10 % faster here on CPU)."""
    try:
        return torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(model.parameters(), lr=lr)
