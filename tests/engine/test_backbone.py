"""timm's tf_efficientnet_lite0 with the renamed weights == the reference implementation."""
import pytest
import timm
import torch

from engine.backbone import TIMM_ARCH, imagenet_state_dict, rename_key, weights_file


def test_every_key_maps_one_to_one():
    raw = torch.load(weights_file(), map_location="cpu", weights_only=True)
    renamed = {rename_key(k) for k in raw}
    timm_keys = set(timm.create_model(TIMM_ARCH, pretrained=False).state_dict())
    assert len(raw) == 296
    assert renamed == timm_keys


def test_logits_identical_to_reference_package():
    reference = pytest.importorskip("efficientnet_lite_pytorch")
    ref = reference.EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(weights_file()))
    ref.eval()
    ours = timm.create_model(TIMM_ARCH, pretrained=False)
    ours.load_state_dict(imagenet_state_dict(), strict=True)
    ours.eval()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (ref(x) - ours(x)).abs().max().item()
    assert diff < 1e-4


def test_symmetric_padding_variant_does_not_match():
    """Guards the choice of the TF-padding architecture: the other one gives other logits."""
    ours = timm.create_model(TIMM_ARCH, pretrained=False)
    other = timm.create_model("efficientnet_lite0", pretrained=False)
    sd = imagenet_state_dict()
    ours.load_state_dict(sd)
    other.load_state_dict(sd)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert (ours.eval()(x) - other.eval()(x)).abs().max().item() > 1e-2
