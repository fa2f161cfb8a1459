"""A GRU forward/backward for the CPU that costs a few tensor ops per time step.

PyTorch runs ``nn.GRU`` on the CPU as one small autograd graph per time step and layer
(a dozen nodes each), so on short eRASS light curves much of a training step is op dispatch
and autograd bookkeeping rather than arithmetic. Here each layer is one autograd node: the
forward loop runs without autograd (6 ops a step), the backward loop is 4 ops a step, and
everything that does not depend on the recurrence (input projections, gate derivatives,
weight gradients) is computed for all steps at once.

The parameters stay those of the ``nn.GRU`` module (same names, same gate order r, z, n), so
checkpoints and CUDA runs (cuDNN's GRU) are unaffected. The equations are PyTorch's::

    r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
    z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
    h' = (1 - z) * n + z * h

Shape legend: B = batch, T = time steps, F = input features, H = hidden size.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn import functional as fn


class _GRULayer(torch.autograd.Function):
    """One GRU layer over a whole sequence, from precomputed input projections."""

    @staticmethod
    def forward(ctx, gi: torch.Tensor, h0: torch.Tensor, w_hh: torch.Tensor, b_hh: torch.Tensor) -> torch.Tensor:
        """gi (T, B, 3H) = x W_ih^T + b_ih; h0 (B, H); returns every step's hidden state (T, B, H)."""
        steps, batch, three_h = gi.shape
        hidden = three_h // 3
        out = gi.new_empty(steps, batch, hidden)
        # W_hh h + b_hh (its n part is needed for backward); the bias is laid down for all steps at
        # once, an in-place matmul per step then skips addmm's broadcast copy of it.
        gh = b_hh.expand(steps, batch, three_h).clone(memory_format=torch.contiguous_format)
        rz = gi.new_empty(steps, batch, 2 * hidden)
        n = gi.new_empty(steps, batch, hidden)
        w_t = w_hh.t()
        h = h0
        # Slice and unbind once: a view made inside the loop costs a dispatch per step.
        two_h = 2 * hidden
        for gi_rz, gi_n, gh_t, gh_rz, gh_n, rz_t, r_t, z_t, n_t, out_t in zip(
            gi[..., :two_h].unbind(0), gi[..., two_h:].unbind(0), gh.unbind(0), gh[..., :two_h].unbind(0),
            gh[..., two_h:].unbind(0), rz.unbind(0), rz[..., :hidden].unbind(0), rz[..., hidden:].unbind(0),
            n.unbind(0), out.unbind(0),
        ):
            gh_t.addmm_(h, w_t)
            torch.add(gi_rz, gh_rz, out=rz_t).sigmoid_()
            torch.addcmul(gi_n, r_t, gh_n, out=n_t).tanh_()
            h = torch.lerp(n_t, h, z_t, out=out_t)  # n + z (h - n)
        ctx.save_for_backward(h0, w_hh, out, gh, rz, n)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out: torch.Tensor):
        h0, w_hh, out, gh, rz, n = ctx.saved_tensors
        steps, batch, hidden = out.shape
        h_prev = torch.cat([h0.unsqueeze(0), out[:-1]])
        r, z = rz[..., :hidden], rz[..., hidden:]
        # d(loss)/d(gate pre-activations) = dh * coef, with coefficients that do not depend on
        # the recurrence: compute them for all steps at once.
        dn_coef = (1 - z) * (1 - n * n)
        coef = torch.stack([dn_coef * gh[..., 2 * hidden :] * r * (1 - r), z * (1 - z) * (h_prev - n), dn_coef * r], dim=2)
        d_gh = torch.empty_like(coef)  # (T, B, 3, H)
        d_h = d_out.clone(memory_format=torch.contiguous_format)  # becomes the total gradient at each h_t
        carry = None  # gradient reaching h_t through step t + 1
        for d_h_t, d_h_col, coef_t, d_gh_t, d_gh_flat, z_t in zip(
            reversed(d_h.unbind(0)), reversed(d_h.unsqueeze(2).unbind(0)), reversed(coef.unbind(0)),
            reversed(d_gh.unbind(0)), reversed(d_gh.view(steps, batch, 3 * hidden).unbind(0)), reversed(z.unbind(0)),
        ):
            if carry is not None:
                d_h_t.add_(carry)
            torch.mul(coef_t, d_h_col, out=d_gh_t)
            carry = torch.mul(d_h_t, z_t).addmm_(d_gh_flat, w_hh)
        d_gh = d_gh.view(steps, batch, 3 * hidden)
        d_gi = d_gh.clone()
        d_gi[..., 2 * hidden :] = d_h * dn_coef  # the n gate sees x-projection and r*(h-projection) apart
        d_w_hh = d_gh.reshape(-1, 3 * hidden).t().mm(h_prev.reshape(-1, hidden))
        return d_gi, carry, d_w_hh, d_gh.sum(dim=(0, 1))


def _dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Inverted dropout; a uniform draw compared with p costs half of ``bernoulli_`` on the CPU."""
    keep = torch.rand_like(x).ge_(p).mul_(1.0 / (1.0 - p))
    return x * keep


def run_module_gru(gru: nn.GRU, x: torch.Tensor, h0: torch.Tensor | None = None, steps: int | None = None) -> torch.Tensor:
    """:func:`run_gru` through the module itself (cuDNN on CUDA); same arguments and result."""
    seq = x if steps is None else x.unsqueeze(0).expand(steps, -1, -1)
    seq = (seq.transpose(0, 1) if gru.batch_first else seq).contiguous()  # one layout for cuDNN
    out = gru(seq, h0)[0]
    return out.transpose(0, 1) if gru.batch_first else out


def run_gru(gru: nn.GRU, x: torch.Tensor, h0: torch.Tensor | None = None, steps: int | None = None) -> torch.Tensor:
    """Run ``gru`` (unidirectional, with biases) over a time-major sequence; return (T, B, H).

    Parameters
    ----------
    gru : nn.GRU
        Supplies the weights; ``batch_first`` is ignored, the layout here is always time-major.
    x : Tensor, shape (T, B, F), or (B, F) with ``steps``
        The inputs; a 2-D ``x`` is the same input at each of ``steps`` steps (the decoder's
        latent), projected once rather than T times.
    h0 : Tensor, shape (layers, B, H), optional
        Initial hidden state (zeros by default).

    Same result as the module itself, dropout between layers in training mode included; on
    the CPU it trains 1.2-2x faster (more for longer sequences). Other devices (cuDNN) run the module.
    """
    if (x.dim() == 2) != (steps is not None):
        raise ValueError(f"run_gru: a (B, F) input needs steps, a (T, B, F) one must not have it; got {tuple(x.shape)}, steps={steps}")
    if x.device.type != "cpu" or gru.bidirectional or not gru.bias or gru.proj_size:
        return run_module_gru(gru, x, h0, steps)
    batch = x.shape[-2]
    layer_in = x
    for layer in range(gru.num_layers):
        w_ih, w_hh = getattr(gru, f"weight_ih_l{layer}"), getattr(gru, f"weight_hh_l{layer}")
        b_ih, b_hh = getattr(gru, f"bias_ih_l{layer}"), getattr(gru, f"bias_hh_l{layer}")
        if layer > 0 and gru.dropout and gru.training:
            layer_in = _dropout(layer_in, gru.dropout)
        gi = fn.linear(layer_in, w_ih, b_ih)
        gi = gi.unsqueeze(0).expand(steps, -1, -1) if gi.dim() == 2 else gi.contiguous()
        h = x.new_zeros(batch, gru.hidden_size) if h0 is None else h0[layer]
        layer_in = _GRULayer.apply(gi, h, w_hh, b_hh)
    return layer_in
