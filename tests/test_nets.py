import pytest
import torch

from diffcodec.nets import UNet, UNetConfig
from diffcodec.nets.unet import transplant


def test_paper_cifar10_configuration_has_35_7M_parameters():
    cfg = UNetConfig(in_channels=3, base_channels=128, channel_mult=(1, 2, 2, 2), num_res_blocks=2,
                     attention_ds=(2,), dropout=0.1)
    assert UNet(cfg).num_parameters() == pytest.approx(35.7e6, rel=0.005)


@pytest.mark.parametrize("h,w", [(8, 8), (7, 13), (1, 1), (28, 28)])
def test_fully_convolutional_runs_on_any_size(h, w):
    net = UNet(UNetConfig(in_channels=3, base_channels=8, channel_mult=(1, 2, 2), learn_sigma=True))
    out = net(torch.randn(2, 3, h, w), torch.tensor([0.0, 999.0]))
    assert out.shape == (2, 6, h, w)


def test_config_round_trip_and_unknown_keys():
    cfg = UNetConfig(channel_mult=(1, 2), attention_ds=(2,))
    assert UNetConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown model config keys"):
        UNetConfig.from_dict({"channels": 3})


def test_residual_blocks_per_level():
    """num_res_blocks may give each level its own count (none at all on one level); the way up
    has one more block per level than the way down."""
    cfg = UNetConfig(in_channels=3, base_channels=8, channel_mult=(1, 2, 2), num_res_blocks=(0, 1, 2),
                     learn_sigma=True)
    assert UNetConfig.from_dict(cfg.to_dict()) == cfg and cfg.to_dict()["num_res_blocks"] == [0, 1, 2]
    net = UNet(cfg)
    assert [r for r in net.roles["down"] if r[0] == "res"] == [("res", 1, 0), ("res", 2, 1), ("res", 2, 0)]
    assert [r[1] for r in net.roles["up"]] == [2, 2, 2, 1, 1, 0]
    assert net(torch.randn(1, 3, 7, 13), torch.tensor([5.0])).shape == (1, 6, 7, 13)
    with pytest.raises(ValueError, match="one count per level"):
        UNetConfig.from_dict({**cfg.to_dict(), "num_res_blocks": [1, 1]})
    with pytest.raises(ValueError, match="one count per level"):
        UNetConfig(channel_mult=(1, 2), num_res_blocks=(1, 1, 5))
    with pytest.raises(ValueError, match="0 or more"):
        UNetConfig(channel_mult=(1, 2), num_res_blocks=(1, -1))


def _net(blocks, seed):
    torch.manual_seed(seed)
    return UNet(UNetConfig(in_channels=3, base_channels=8, channel_mult=(1, 2, 2), num_res_blocks=blocks,
                           learn_sigma=True))


def test_transplant_copies_each_tensor_to_its_place_in_the_unet():
    teacher = _net(1, 0)
    x, t = torch.randn(2, 3, 12, 12), torch.tensor([3.0, 700.0])
    same = _net(1, 1)
    assert transplant(same, teacher) == [] and torch.equal(same(x, t), teacher(x, t))
    # fewer blocks: no block at full resolution on the way down, one on the way up; every tensor fits
    small = _net((0, 1, 1), 1)
    assert transplant(small, teacher) == []
    assert torch.equal(small.down[0][0].weight, teacher.down[1][0].weight)        # the first downsampling
    assert torch.equal(small.up[4][0].in_layers[2].weight, teacher.up[4][0].in_layers[2].weight)
    # more blocks: a level's extra block on the way down is the one furthest from its downsampling
    big = _net((2, 1, 1), 1)
    before = {k: v.clone() for k, v in big.state_dict().items()}
    fresh = transplant(big, teacher)
    assert {k.split(".")[0] + "." + k.split(".")[1] for k in fresh} == {"down.0", "up.6"}
    assert all(torch.equal(big.state_dict()[k], before[k]) for k in fresh)
    assert torch.equal(big.down[1][0].in_layers[2].weight, teacher.down[0][0].in_layers[2].weight)
