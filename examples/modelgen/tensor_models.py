"""The two tensor models: a small CNN image classifier and a 784-512-512-10 MLP."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .artifacts import Artifacts, Tensor, check_matches, save_sample, save_torchscript

CLASSES = 10
# The CIFAR-10 class names, for the classify task's labelled output (weights are random).
LABELS = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
IMAGE = (3, 64, 64)
CLASSIFIER_WIDTH = 24  # ≈ 70 MFLOP a row: compute-bound, ~1,000 rows/s on 2 cores
MLP_SIZES = (784, 512, 512, CLASSES)
# Sample inputs come from one seed for every version, so versions differ only in weights.
SAMPLE_SEED = 0
SAMPLE_BATCH = 4


def conv_block(channels_in: int, channels_out: int) -> list[nn.Module]:
    return [
        nn.Conv2d(channels_in, channels_out, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(channels_out),
        nn.ReLU(inplace=True),
    ]


def classifier(width: int = CLASSIFIER_WIDTH) -> nn.Sequential:
    """Four conv-BN-ReLU blocks (64→8 px by max-pooling), global average pooling, a linear head."""
    w = width
    return nn.Sequential(
        *conv_block(IMAGE[0], w),
        nn.MaxPool2d(2),
        *conv_block(w, 2 * w),
        nn.MaxPool2d(2),
        *conv_block(2 * w, 4 * w),
        nn.MaxPool2d(2),
        *conv_block(4 * w, 8 * w),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8 * w, CLASSES),
    )


def mlp() -> nn.Sequential:
    """784-512-512-10 with ReLU between the linear layers."""
    layers: list[nn.Module] = []
    for fan_in, fan_out in zip(MLP_SIZES, MLP_SIZES[1:]):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def randomize_batch_norm(model: nn.Module, generator: torch.Generator) -> None:
    """Gives BatchNorm layers non-trivial statistics, as a trained network would have."""
    for layer in model.modules():
        if isinstance(layer, nn.BatchNorm2d):
            n = layer.num_features
            layer.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
            layer.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            layer.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            layer.bias.data.copy_(torch.randn(n, generator=generator) * 0.1)


def build_classifier(folder: Path, seed: int) -> Artifacts:
    """Scripts the CNN with weights from `seed`; writes model.pt and a sample batch."""
    torch.manual_seed(seed)
    model = classifier()
    with torch.no_grad():
        randomize_batch_norm(model, torch.Generator().manual_seed(seed))
    inputs = [Tensor("input", torch.float32, (-1, *IMAGE))]
    outputs = [Tensor("logits", torch.float32, (-1, CLASSES))]
    made = export(model.eval(), folder, inputs, outputs)
    (folder / "labels.txt").write_text("".join(f"{label}\n" for label in LABELS))
    made.config = {"labels": LABELS}
    return made


def build_mlp(folder: Path, seed: int) -> Artifacts:
    """Scripts the MLP with weights from `seed`; writes model.pt and a sample batch."""
    torch.manual_seed(seed)
    inputs = [Tensor("input", torch.float32, (-1, MLP_SIZES[0]))]
    outputs = [Tensor("logits", torch.float32, (-1, CLASSES))]
    return export(mlp().eval(), folder, inputs, outputs)


def export(model: nn.Module, folder: Path, inputs: list[Tensor], outputs: list[Tensor]) -> Artifacts:
    """Scripts `model`, reloads the saved file and records its output on a sample batch."""
    path = save_torchscript(torch.jit.script(model), folder)
    loaded = torch.jit.load(str(path)).eval()
    generator = torch.Generator().manual_seed(SAMPLE_SEED)
    sample = torch.randn(SAMPLE_BATCH, *inputs[0].shape[1:], generator=generator)
    with torch.no_grad():
        want = model(sample)
        got = loaded(sample)
        check_matches("reloaded model.pt", got, want, tolerance=1e-5)
        for batch in (1, 3):  # the batch dimension stays dynamic in the saved file
            if not outputs[0].accepts(loaded(sample[:batch])):
                raise AssertionError(f"batch {batch} gives an output outside {outputs[0].metadata()}")
    return Artifacts(
        inputs=inputs,
        outputs=outputs,
        sample={
            "inputs": save_sample(folder, inputs, [sample]),
            "outputs": save_sample(folder, outputs, [got]),
        },
    )
