"""Synthetic classification data: Gaussian clusters made on the fly, so nothing is downloaded."""

from typing import Tuple

import torch
from torch.utils.data import Dataset

FEATURES = 16
CLASSES = 4


class SyntheticDataset(Dataset):
    """``size`` points around ``CLASSES`` fixed centres; the same ``seed`` gives the same data."""

    def __init__(self, size: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        centres = torch.randn(CLASSES, FEATURES, generator=torch.Generator().manual_seed(1234)) * 3
        self.labels = torch.randint(0, CLASSES, (size,), generator=generator)
        self.features = centres[self.labels] + torch.randn(size, FEATURES, generator=generator)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.features[index], self.labels[index]
