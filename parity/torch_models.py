"""The PyTorch twins of :mod:`jaxloss.train.models`, in plain ``torch.nn`` (NCHW, as torch is).

* :class:`TorchSeedCNN` is the seed's network: an ``nn.Sequential`` of Conv2d(3, 32, 5,
  padding=2), MaxPool2d(2), Conv2d(32, 32, 5, padding=2), MaxPool2d(2), Conv2d(32, 64, 5,
  padding=2), MaxPool2d(2), Flatten(), Linear(1024, 64), Linear(64, num_classes), with a
  ReLU after each conv and the first Linear when ``activation='relu'``.
* :class:`TorchResNet18` is torchvision's ``resnet18(num_classes=...)`` re-written in
  plain torch.nn: same modules, same names, same state_dict keys and shapes, same
  initialisation (``kaiming_normal_(mode='fan_out', nonlinearity='relu')`` for convs,
  BatchNorm weight 1 / bias 0), so a torchvision resnet18 state_dict loads into it and
  vice versa. torchvision is not a dependency of this project (its wheels pin one torch
  build, and it does not import in this environment), so it is not used here;
  ``tests/test_train_models.py`` compares the two architectures when torchvision imports
  and is skipped otherwise. ``cifar_stem=True`` swaps the stem for the common CIFAR one
  (conv 3x3 stride 1 padding 1, no max-pool).

They live in :mod:`jaxloss.parity` because they import torch, which :mod:`jaxloss.train` never
does; :data:`jaxloss.parity.models.twins.TORCH_TWINS` names each model's twin.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["TorchBasicBlock", "TorchResNet18", "TorchSeedCNN"]


class TorchSeedCNN(nn.Module):
    """The seed's CIFAR-10 CNN: input ``(N, 3, 32, 32)``, logits ``(N, num_classes)``.

    >>> import torch
    >>> from jaxloss.parity.torch_models import TorchSeedCNN
    >>> TorchSeedCNN()(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    """

    def __init__(self, num_classes: int = 10, activation: str | None = None) -> None:
        super().__init__()
        if activation not in (None, "none", "relu"):
            raise ValueError(f"activation must be one of None, 'relu'; got {activation!r}")

        def act() -> list[nn.Module]:
            return [nn.ReLU()] if activation == "relu" else []

        self.model = nn.Sequential(
            nn.Conv2d(3, 32, 5, padding=2),
            *act(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 32, 5, padding=2),
            *act(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5, padding=2),
            *act(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * 4 * 4, 64),
            *act(),
            nn.Linear(64, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class TorchBasicBlock(nn.Module):
    """torchvision.models.resnet.BasicBlock (expansion 1, no groups / dilation).

    >>> import torch
    >>> from jaxloss.parity.torch_models import TorchBasicBlock
    >>> TorchBasicBlock(8, 8)(torch.zeros(1, 8, 4, 4)).shape
    torch.Size([1, 8, 4, 4])
    """

    expansion = 1

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class TorchResNet18(nn.Module):
    """torchvision's ``resnet18(num_classes=num_classes)``; ``cifar_stem`` as in :class:`jaxloss.train.models.ResNet18`.

    >>> from jaxloss.parity.torch_models import TorchResNet18
    >>> TorchResNet18(num_classes=10).fc.weight.shape
    torch.Size([10, 512])
    """

    def __init__(self, num_classes: int = 10, cifar_stem: bool = False) -> None:
        super().__init__()
        self.inplanes = 64
        if cifar_stem:
            self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        else:
            self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool: nn.Module = (
            nn.Identity() if cifar_stem else nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        )
        self.layer1 = self._make_layer(64, 1)
        self.layer2 = self._make_layer(128, 2)
        self.layer3 = self._make_layer(256, 2)
        self.layer4 = self._make_layer(512, 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, num_classes)
        for m in self.modules():  # torchvision's ResNet.__init__
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, planes: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )
        layers = [TorchBasicBlock(self.inplanes, planes, stride, downsample), TorchBasicBlock(planes, planes)]
        self.inplanes = planes
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))
