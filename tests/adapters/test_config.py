import pytest
import torch

from madx.adapters.config import AdapterConfig, resolve_layers
from madx.adapters.sets import AdapterSet


def test_leave_out_defaults_to_no_layer_and_stays_out_of_the_dict():
    """to_dict feeds suite defaults and job parameters: a config without leave_out must give the dict it gave
    before the field existed (job ids of existing runs)."""
    assert AdapterConfig().leave_out == ()
    before = {"language_reduction_factor": 2, "invertible_reduction_factor": 2, "task_reduction_factor": 16}
    assert AdapterConfig(init_weights="identity").to_dict() == {**before, "init_weights": "identity"}  # read back as it was
    assert AdapterConfig().to_dict() == {**before, "init_weights": "adapterhub"}  # the default computes something else: other job ids
    config = AdapterConfig(leave_out=[-1])  # a list (YAML, JSON) becomes a tuple
    assert config.leave_out == (-1,) and config.to_dict()["leave_out"] == [-1]
    assert AdapterConfig.from_dict(config.to_dict()) == config
    assert AdapterConfig(leave_out=11).leave_out == (11,)  # one layer, as a command-line flag gives it


@pytest.mark.parametrize("value,message", [
    ((True,), "must be a tuple of layer indices"),
    (("last",), "must be a tuple of layer indices"),
    ((1.0,), "must be a tuple of layer indices"),
    ("-1", "must be a tuple of layer indices"),
    ((3, 3), "names a layer twice"),
])
def test_leave_out_is_validated(value, message):
    with pytest.raises(ValueError, match=f"AdapterConfig.leave_out {message}"):
        AdapterConfig(leave_out=value)


def test_negative_indices_count_from_the_last_layer():
    assert AdapterConfig(leave_out=(-1,)).layers_left_out(12) == (11,)
    assert AdapterConfig(leave_out=(-1, 0)).layers_left_out(12) == (0, 11)
    assert resolve_layers((-12,), 12) == (0,)
    assert resolve_layers((), 12) == ()


@pytest.mark.parametrize("leave_out,layers,message", [
    ((12,), 12, "layer 12 does not exist in a model of 12 layers"),
    ((-13,), 12, "layer -13 does not exist"),
    ((11, -1), 12, r"names layer 11 twice \(11 and -1\)"),
    ((0, 1), 2, "leaves all 2 layers without adapters"),
])
def test_leave_out_is_checked_against_the_layer_count(leave_out, layers, message):
    with pytest.raises(ValueError, match=message):
        resolve_layers(leave_out, layers)


def test_adapter_set_has_no_adapter_in_the_layers_left_out():
    full = AdapterSet("language", 4, 8, 4, 2)
    left = AdapterSet("language", 4, 8, 4, 2, leave_out=(-1,))
    assert left.leave_out == (3,) and left.layers[3] is None and left.num_layers == 4
    assert (left.hidden_size, left.bottleneck_size, left.invertible_bottleneck_size) == (8, 4, 2)
    # the same tensor names as a full set, less the last layer's
    assert set(left.state_dict()) == {k for k in full.state_dict() if not k.startswith("layers.3.")}
    assert left.invertible is not None, "the invertible adapter is on the embeddings, not in a layer"
    left.to(torch.float64)
    assert all(p.dtype == torch.float64 for p in left.parameters())
    first_left_out = AdapterSet("task", 4, 8, 2, leave_out=(0,))
    assert (first_left_out.hidden_size, first_left_out.bottleneck_size) == (8, 2)


def test_init_weights_is_named_and_checked():
    assert AdapterConfig().init_weights == "adapterhub"
    assert AdapterConfig.from_dict({"init_weights": "identity"}).init_weights == "identity"
    with pytest.raises(ValueError, match="init_weights must be one of 'adapterhub', 'identity', got 'zeros'"):
        AdapterConfig(init_weights="zeros")


@pytest.mark.parametrize("init_weights", ["adapterhub", "identity"])
def test_to_dict_and_from_dict_round_trip_every_setting(init_weights):
    config = AdapterConfig(init_weights=init_weights, leave_out=(-1,))
    assert AdapterConfig.from_dict(config.to_dict()) == config
