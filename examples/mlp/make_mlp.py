"""Export a small 3-layer MLP with torch-mlir and write ``mlp.mlir`` next to this script.

The model is ``64 -> 128 -> 128 -> 32`` with ReLU between layers, batch 4, weights from a
fixed seed, so the checked-in ``mlp.mlir`` is reproducible. torch-mlir's
``linalg-on-tensors`` output carries the weights as ``dense_resource`` blobs in a
``{-# dialect_resources ... #-}`` trailer; ``bitmod-opt`` takes the file as is::

    python examples/mlp/make_mlp.py
    bitmod-opt examples/mlp/mlp.mlir --pipeline=bitmod-default --emit=bin -o /tmp/mlp.bin

The layers become ``fc1``, ``fc2``, ``fc3`` in ``bitmod-opt`` (program order).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn

IN_FEATURES, HIDDEN, OUT_FEATURES, BATCH = 64, 128, 32, 4
SEED = 0


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(IN_FEATURES, HIDDEN)
        self.fc2 = nn.Linear(HIDDEN, HIDDEN)
        self.fc3 = nn.Linear(HIDDEN, OUT_FEATURES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


def build() -> tuple[MLP, torch.Tensor]:
    """The seeded model and an example input."""
    torch.manual_seed(SEED)
    model = MLP().eval()
    example = torch.randn(BATCH, IN_FEATURES)
    return model, example


def export_mlir(model: nn.Module, example: torch.Tensor) -> str:
    from torch_mlir import fx

    module = fx.export_and_import(model, example, output_type="linalg-on-tensors")
    return str(module)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=Path(__file__).with_name("mlp.mlir"))
    args = parser.parse_args()
    model, example = build()
    args.output.write_text(export_mlir(model, example), encoding="utf-8")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
