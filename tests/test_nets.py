import pytest
import torch

from diffcodec.nets import UNet, UNetConfig


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
