"""Tiny Hugging Face models built from configs (random weights, nothing downloaded) and synthetic token data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

VOCAB = 64
SEQ_LEN = 16


class TokenDataset(torch.utils.data.Dataset):
    """Synthetic token sequences: for classification, label = whether token 7 occurs; for LM, labels = inputs."""

    def __init__(self, n: int, *, seed: int, task: str = "classify") -> None:
        rng = np.random.default_rng(seed)
        self.input_ids = torch.tensor(rng.integers(8, VOCAB, size=(n, SEQ_LEN)), dtype=torch.long)
        marked = rng.random(n) < 0.5
        self.input_ids[marked, rng.integers(0, SEQ_LEN, size=int(marked.sum()))] = 7
        self.labels = torch.tensor(marked.astype("int64"))
        self.task = task

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        ids = self.input_ids[i]
        label = self.labels[i] if self.task == "classify" else ids.clone()
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": label}


def bert_classifier() -> Any:
    """A 2-layer BERT sequence classifier (hidden 32)."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=SEQ_LEN, num_labels=2)
    return BertForSequenceClassification(config)


def gpt2_lm() -> Any:
    """A 2-layer GPT-2 language model (embedding 32); its output layer shares the token embedding."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=2, n_positions=SEQ_LEN))


def accuracy(eval_pred: Any) -> dict[str, float]:
    logits, labels = eval_pred
    return {"accuracy": float((np.argmax(logits, axis=-1) == labels).mean())}


def training_args(out: Path, **overrides: Any) -> Any:
    """Quiet CPU TrainingArguments: 2 epochs, batch 16, evaluation per epoch, no checkpoints."""
    from transformers import TrainingArguments

    kwargs: dict[str, Any] = {
        "output_dir": str(out), "num_train_epochs": 2, "per_device_train_batch_size": 16,
        "per_device_eval_batch_size": 32, "eval_strategy": "epoch", "logging_strategy": "epoch",
        "save_strategy": "no", "report_to": "none", "use_cpu": True, "disable_tqdm": True, "seed": 0,
        "learning_rate": 5e-3, "dataloader_num_workers": 0,
    }
    kwargs.update(overrides)
    return TrainingArguments(**kwargs)
