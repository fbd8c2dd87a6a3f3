"""Inference: a trained model with its input scaling folded in and its outputs as probabilities or target units, in torch and as ONNX.

`Predictor` is what `tunectl predict` runs and what `export --format onnx` writes, so that the
two give the same numbers: the training split's mean and standard deviation (from the split
manifest) before the model; softmax (multiclass), the sigmoid as two columns (binary), or the
target's own units (regression) after it. A table's one-hot and missing-value encoding stays
outside (`tables.encode`): an ONNX model takes the encoded features, in the order the
manifest's `preprocessing.features` lists.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from tunectl.errors import RunError, StudyError


class Predictor(nn.Module):
    """model((x - mean) / std), then probabilities (N x classes) or values (N x 1, target units)."""

    def __init__(self, model: nn.Module, task: str, x_mean: torch.Tensor, x_std: torch.Tensor,
                 y_mean: float = 0.0, y_scale: float = 1.0):
        super().__init__()
        self.model, self.task = model, task
        self.register_buffer("x_mean", x_mean.to(torch.float32))
        self.register_buffer("x_std", x_std.to(torch.float32))
        self.y_mean, self.y_scale = float(y_mean), float(y_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model((x - self.x_mean) / self.x_std)
        if self.task == "multiclass":
            return torch.softmax(out, 1)
        if self.task == "binary":
            p = torch.sigmoid(out[:, :1])
            return torch.cat([1 - p, p], 1)
        return out[:, :1] * self.y_scale + self.y_mean


def predictor(model: nn.Module, manifest: dict[str, Any], task: str, name: str) -> Predictor:
    """The Predictor of a checkpoint's model, with the scaling its split manifest recorded."""
    scaling = manifest.get("scaling") if isinstance(manifest.get("scaling"), dict) else {}
    if "x_mean" not in scaling or "x_std" not in scaling:
        raise StudyError(f"{name}: its split manifest records no input scaling (made by an older tunectl); "
                         f"train or tune it again to predict with it")
    try:
        mean = torch.tensor(scaling["x_mean"], dtype=torch.float32)
        std = torch.tensor(scaling["x_std"], dtype=torch.float32)
        y_mean, y_scale = float(scaling.get("y_mean", 0.0)), float(scaling.get("y_scale", 1.0))
    except (TypeError, ValueError):
        raise StudyError(f"{name}: the input scaling in its split manifest is damaged; export the trial again") from None
    return Predictor(model.eval(), task, mean, std, y_mean, y_scale).eval()


@torch.inference_mode()
def run(pred: Predictor, x: torch.Tensor, device: torch.device, batch: int = 4096) -> torch.Tensor:
    """The Predictor over x in large batches, on `device`, back as float32 on the CPU."""
    pred = pred.to(device)
    return torch.cat([pred(x[i:i + batch].to(device)).float().cpu() for i in range(0, len(x), batch)])


def write_onnx(pred: Predictor, input_shape: tuple[int, ...], path: Path) -> None:
    """The Predictor as an ONNX graph (input `x`: N x input_shape, float32; output `y`), written whole."""
    import os
    import warnings

    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with warnings.catch_warnings():  # the TorchScript exporter is deprecated; the torch.export one needs onnxscript
            warnings.simplefilter("ignore")
            torch.onnx.export(pred.cpu().eval(), (torch.zeros((2, *input_shape)),), str(tmp), input_names=["x"],
                              output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}}, dynamo=False)
        tmp.replace(path)
    except (ImportError, ModuleNotFoundError) as e:
        raise RunError(f"export --format onnx needs the ONNX exporter's packages ({e}); pip install 'tunectl[onnx]'") from None
    except Exception as e:  # noqa: BLE001 - a model the exporter cannot trace: one line, exit 1
        if isinstance(e, (RunError, OSError)):
            raise
        raise RunError(f"export --format onnx: the model could not be exported ({type(e).__name__}: "
                       f"{str(e).splitlines()[0][:120] if str(e) else ''}); export it without --format onnx") from None
    finally:
        tmp.unlink(missing_ok=True)
