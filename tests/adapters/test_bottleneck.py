import pytest
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


def test_adapterhub_init_draws_both_projections_from_n_0_002():
    """AdapterHub adapters 1.x, init_weights="bert": every Linear of the adapter N(0, 0.02), biases 0."""
    torch.manual_seed(0)
    adapter = BottleneckAdapter(768, 384, init="adapterhub")
    for linear in (adapter.down, adapter.up):
        assert abs(float(linear.weight.std()) - 0.02) < 0.001 and abs(float(linear.weight.mean())) < 0.001
        assert torch.count_nonzero(linear.bias) == 0
    h, r = torch.randn(2, 5, 768), torch.randn(2, 5, 768)
    assert not torch.equal(adapter(h, r), r)


def test_identity_init_gives_the_down_projection_no_gradient_on_the_first_step():
    """With U = 0, dL/dD = 0 on the first step (only U and the up-bias move); with AdapterHub's init D moves at once."""
    h, r = torch.randn(4, 32), torch.randn(4, 32)
    identity = BottleneckAdapter(32, 8, init="identity")
    identity(h, r).pow(2).sum().backward()
    assert torch.count_nonzero(identity.down.weight.grad) == 0 and identity.up.weight.grad.abs().sum() > 0
    hub = BottleneckAdapter(32, 8, init="adapterhub")
    hub(h, r).pow(2).sum().backward()
    assert hub.down.weight.grad.abs().sum() > 0


def test_an_unknown_init_is_refused():
    with pytest.raises(ValueError, match="adapter init must be one of 'adapterhub', 'identity', got 'xavier'"):
        BottleneckAdapter(32, 8, init="xavier")
