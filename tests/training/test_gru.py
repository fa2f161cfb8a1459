"""The CPU GRU against PyTorch's own: same outputs, same gradients, same parameters."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from training.gru import _GRULayer, run_gru


def assert_same(ours: torch.Tensor, ref: torch.Tensor, inputs: list[torch.Tensor]) -> None:
    """Equal outputs, and equal gradients of one random projection of them for every input."""
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
    weight = torch.randn_like(ref)
    mine = torch.autograd.grad((ours * weight).sum(), inputs)
    theirs = torch.autograd.grad((ref * weight).sum(), inputs)
    for a, b in zip(mine, theirs):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_layer_gradients_match_finite_differences():
    torch.manual_seed(0)
    steps, batch, hidden = 5, 3, 4
    args = (torch.randn(steps, batch, 3 * hidden), torch.randn(batch, hidden), torch.randn(3 * hidden, hidden), torch.randn(3 * hidden))
    args = tuple(a.double().requires_grad_() for a in args)
    assert torch.autograd.gradcheck(_GRULayer.apply, args)


@pytest.mark.parametrize("layers, steps", [(2, 12), (1, 1), (3, 30)])
def test_matches_nn_gru_outputs_and_gradients(layers, steps):
    torch.manual_seed(layers)
    gru = nn.GRU(9, 16, layers, batch_first=True)
    x = torch.randn(7, steps, 9, requires_grad=True)
    h0 = torch.randn(layers, 7, 16, requires_grad=True)
    assert_same(run_gru(gru, x.transpose(0, 1), h0).transpose(0, 1), gru(x, h0)[0], [x, h0, *gru.parameters()])


def test_constant_input_is_the_expanded_sequence():
    """The decoder's latent, fed at every step, is projected once but gives the same result."""
    torch.manual_seed(1)
    gru = nn.GRU(40, 16, 2, batch_first=True)
    z = torch.randn(5, 40, requires_grad=True)
    h0 = torch.randn(2, 5, 16, requires_grad=True)
    ref = gru(z.unsqueeze(1).expand(-1, 8, -1), h0)[0]
    assert_same(run_gru(gru, z, h0, steps=8).transpose(0, 1), ref, [z, h0, *gru.parameters()])
    with pytest.raises(ValueError, match="needs steps"):
        run_gru(gru, z, h0)


def test_dropout_between_layers_only_in_training():
    torch.manual_seed(2)
    gru = nn.GRU(9, 32, 2, dropout=0.5, batch_first=True)
    x = torch.randn(6, 64, 9)
    eval_out = run_gru(gru.eval(), x)
    torch.testing.assert_close(eval_out, gru(x.transpose(0, 1))[0].transpose(0, 1), rtol=1e-5, atol=1e-6)
    gru.train()
    first, second = run_gru(gru, x), run_gru(gru, x)
    assert not torch.allclose(first, second)  # a fresh mask per call
    assert not torch.allclose(first, eval_out)
    # One layer has no inter-layer dropout, as in nn.GRU.
    single = nn.GRU(9, 32, 1, dropout=0.0, batch_first=True).train()
    torch.testing.assert_close(run_gru(single, x), run_gru(single, x))
