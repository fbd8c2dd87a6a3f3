"""Your own data from Python: `tunectl train --dataset py:examples/digits_py.py:load`.

The function takes no arguments and returns `(x, y)` (numpy arrays or torch tensors), or
`(x, y, task)` to name the task (binary, multiclass or regression) instead of letting tunectl
infer it from the targets. After that, everything is as for `npz:` data: the seeded split
and its manifest, scaling from the training split, task inference.

Here: scikit-learn's handwritten digits as 1,797 images of 8x8 pixels, *without* a channel
axis (N x H x W). tunectl treats such an x as one-channel images (N x 1 x H x W), so a
ConvNet and augmentation apply. The pixels are scaled from 0..16 to 0..1, exactly as the
embedded `digits` data set does, so this gives the same split and the same numbers.
"""

from __future__ import annotations

import numpy as np


def load() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)  # N x 8 x 8, values 0..1
    y = digits.target.astype(np.int64)  # the digit, 0..9
    return x, y
