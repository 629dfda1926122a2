import pytest
import torch

from madx.adapters import NICECoupling
from tests.conftest import randomise


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("hidden", [8, 32, 768])
def test_inverse_of_forward_is_identity(seed, hidden):
    block = NICECoupling(hidden)
    randomise(block, seed=seed, std=2 / hidden**0.5)  # realistic scale: outputs stay O(1)
    x = torch.randn(3, 7, hidden, generator=torch.Generator().manual_seed(100 + seed))
    with torch.no_grad():
        y = block(x)
        assert (y - x).abs().max() > 1e-2, "a randomised block must not be the identity"
        assert (block.inverse(y) - x).abs().max() <= 1e-5
        assert (block(block.inverse(x)) - x).abs().max() <= 1e-5


def test_forward_is_eq3_written_out():
    block = NICECoupling(16)
    randomise(block, seed=1)
    x = torch.randn(2, 16)
    e1, e2 = x[:, :8], x[:, 8:]
    F = lambda z: block.F.up(torch.relu(block.F.down(z)))
    G = lambda z: block.G.up(torch.relu(block.G.down(z)))
    o1 = F(e2) + e1
    o2 = G(o1) + e2
    assert torch.allclose(block(x), torch.cat([o1, o2], -1), atol=1e-6)


def test_mad_x_dims_and_identity_at_init():
    block = NICECoupling(768)
    assert block.F.down.weight.shape == (192, 384) and block.G.up.weight.shape == (384, 192)
    x = torch.randn(2, 768)
    assert torch.equal(block(x), x)


def test_odd_hidden_size_is_rejected():
    with pytest.raises(ValueError, match="even hidden size"):
        NICECoupling(33)


def test_adapterhub_init_is_n_0_002_in_f_and_g():
    """AdapterHub applies its "bert" init to the NICE block: every projection N(0, 0.02), biases 0."""
    torch.manual_seed(0)
    block = NICECoupling(768, init="adapterhub")
    for linear in (block.F.down, block.F.up, block.G.down, block.G.up):
        assert abs(float(linear.weight.std()) - 0.02) < 0.002 and torch.count_nonzero(linear.bias) == 0
    x = torch.randn(2, 768)
    with torch.no_grad():
        assert not torch.equal(block(x), x) and torch.allclose(block.inverse(block(x)), x, atol=1e-5)
