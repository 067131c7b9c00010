"""Excitation backprop and c-MWP against TorchRay (test-only; CC BY-NC, never imported by the package).

Pearson >= 0.99 per image, maps upsampled the same way, on torchvision's vgg11 with random weights
(saliency at a pooling layer, contrast at the penultimate classifier layer) and on a small
torchvision ResNet (BasicBlocks, random weights and batch-norm statistics). TorchRay runs on its own
copy of each model with in-place ReLUs switched off (its probes read module outputs that an in-place
ReLU would overwrite) and, for the ResNet, its ``update_resnet`` skip connections.
"""

import copy

import pytest
import torch
import torchvision
from torch import nn

from tb_viz_plugin.methods.attribution import attribute

from tests.test_attribution_peers import pearson

excitation = pytest.importorskip("torchray.attribution.excitation_backprop")

MIN_PEARSON = 0.99


def _torchray_copy(model: nn.Module) -> nn.Module:
    copied = copy.deepcopy(model)
    for module in copied.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False
    return copied


def _check(name, ours, reference):
    correlation = pearson(ours, reference[:, 0])
    assert (correlation >= MIN_PEARSON).all(), f"{name}: Pearson {correlation.tolist()}"


def test_vgg11_matches_torchray():
    torch.manual_seed(0)
    model = torchvision.models.vgg11().eval()
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    targets = torch.tensor([3, 717])
    layer = "features.10"  # the third max-pool, 8x8 at 64 px
    ours = attribute(model, images, ["excitation_backprop", "contrastive_excitation_backprop"], targets, layer)
    peer = _torchray_copy(model)
    reference = excitation.excitation_backprop(peer, images, targets, saliency_layer=layer, resize=True)
    _check("excitation backprop", ours.get("excitation_backprop"), reference)
    contrast = excitation.contrastive_excitation_backprop(
        peer, images, targets, saliency_layer=layer, contrast_layer="classifier.4", classifier_layer="classifier.6", resize=True
    )
    _check("c-MWP", ours.get("contrastive_excitation_backprop"), contrast)


def test_small_resnet_matches_torchray():
    from torchvision.models.resnet import BasicBlock, ResNet

    torch.manual_seed(0)
    model = ResNet(BasicBlock, [1, 1, 1, 1], num_classes=10)
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():  # positive scales (TorchRay passes batch norm unchanged whatever its sign), real statistics
        for norm in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
            norm.weight.copy_(0.5 + torch.rand(norm.weight.shape, generator=generator))
            norm.bias.copy_(0.1 * torch.randn(norm.bias.shape, generator=generator))
            norm.running_mean.copy_(0.1 * torch.randn(norm.running_mean.shape, generator=generator))
            norm.running_var.copy_(0.5 + torch.rand(norm.running_var.shape, generator=generator))
    model.eval()
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    targets = torch.tensor([1, 7])
    layers = ["layer2", "layer3"]
    ours = attribute(model, images, ["excitation_backprop", "contrastive_excitation_backprop"], targets, layers)
    peer = excitation.update_resnet(_torchray_copy(model))
    for layer, contrast_layer in zip(layers, ["layer4", "avgpool"]):
        reference = excitation.excitation_backprop(peer, images, targets, saliency_layer=layer, resize=True)
        _check(f"excitation backprop @ {layer}", ours.get("excitation_backprop", layer), reference)
        contrast = excitation.contrastive_excitation_backprop(
            peer, images, targets, saliency_layer=layer, contrast_layer=contrast_layer, classifier_layer="fc", resize=True
        )
        _check(f"c-MWP @ {layer} (contrast at {contrast_layer})", ours.get("contrastive_excitation_backprop", layer), contrast)
