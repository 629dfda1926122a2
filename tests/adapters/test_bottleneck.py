import torch

from madx.adapters import BottleneckAdapter
from tests.conftest import randomise


def test_identity_at_init_returns_the_residual_exactly():
    adapter = BottleneckAdapter(32, 8)
    h, r = torch.randn(2, 5, 32), torch.randn(2, 5, 32)
    assert torch.equal(adapter(h, r), r)


def test_forward_is_down_relu_up_plus_residual():
    adapter = BottleneckAdapter(32, 8)
    randomise(adapter, seed=0)
    h, r = torch.randn(2, 5, 32), torch.randn(2, 5, 32)
    expected = adapter.up(torch.relu(adapter.down(h))) + r
    assert torch.allclose(adapter(h, r), expected, atol=1e-6)


def test_down_projection_gets_gradient_after_one_step():
    adapter = BottleneckAdapter(32, 8)
    h, r = torch.randn(4, 32), torch.randn(4, 32)
    optimizer = torch.optim.SGD(adapter.parameters(), lr=0.1)
    for _ in range(2):
        adapter(h, r).pow(2).sum().backward()
        optimizer.step()
        optimizer.zero_grad()
    assert adapter.up.weight.abs().sum() > 0
    adapter(h, r).pow(2).sum().backward()
    assert adapter.down.weight.grad.abs().sum() > 0
