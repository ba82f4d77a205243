"""A small PyTorchTrial: a two-layer network classifying synthetic Gaussian clusters."""

from typing import Any, Dict, Sequence, Tuple, Union

import torch
from determined import pytorch
from torch import nn

import data

TorchData = Union[Dict[str, torch.Tensor], Sequence[torch.Tensor], torch.Tensor]


class SyntheticTrial(pytorch.PyTorchTrial):
    def __init__(self, context: pytorch.PyTorchTrialContext) -> None:
        self.context = context
        hparams: Dict[str, Any] = context.get_hparams()
        hidden = int(hparams.get("hidden_size", 64))
        self.model = context.wrap_model(
            nn.Sequential(nn.Linear(data.FEATURES, hidden), nn.ReLU(), nn.Linear(hidden, data.CLASSES))
        )
        self.optimizer = context.wrap_optimizer(
            torch.optim.SGD(self.model.parameters(), lr=float(hparams.get("learning_rate", 0.1)))
        )
        self.loss_fn = nn.CrossEntropyLoss()

    def build_training_data_loader(self) -> pytorch.DataLoader:
        batch_size = self.context.get_per_slot_batch_size()
        return pytorch.DataLoader(data.SyntheticDataset(512, seed=0), batch_size=batch_size, shuffle=True)

    def build_validation_data_loader(self) -> pytorch.DataLoader:
        batch_size = self.context.get_per_slot_batch_size()
        return pytorch.DataLoader(data.SyntheticDataset(128, seed=1), batch_size=batch_size)

    def train_batch(self, batch: TorchData, epoch_idx: int, batch_idx: int) -> Dict[str, torch.Tensor]:
        features, labels = batch
        loss = self.loss_fn(self.model(features), labels)
        self.context.backward(loss)
        self.context.step_optimizer(self.optimizer)
        return {"loss": loss}

    def evaluate_batch(self, batch: TorchData) -> Dict[str, torch.Tensor]:
        features, labels = batch
        logits = self.model(features)
        accuracy = (logits.argmax(dim=1) == labels).float().mean()
        return {"validation_loss": self.loss_fn(logits, labels), "accuracy": accuracy}
