"""Reading the weights out of dlib's serialized network file, in pure Python.

dlib writes a network layer by layer from the input up; each layer with weights starts with its
version string (`con_4`, `affine_`, `fc_2`) and holds its parameters as one tensor record: the
integer 2, four dimensions, then the values as little-endian float32. Integers are dlib's
compact form: a control byte (low nibble: how many bytes follow; high bit: negative), then
those bytes, little-endian. Only the tensors are needed here; the layer types and their order
are checked against the network being filled, so a different file is refused, not misread.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from lookalike.errors import LookalikeError
from lookalike.training.backbones.dlib_resnet import Affine, DlibResNet

KINDS = {b"con_4": "con", b"affine_": "affine", b"fc_2": "fc"}  # dlib's version strings of layers with weights
LAYER_TAG = re.compile(rb"\x01[\x04\x05\x07](" + b"|".join(KINDS) + rb")")
TENSOR_VERSION = 2


class DlibFileError(LookalikeError):
    """The file is not the dlib network this module rebuilds."""


def _int(data: bytes, pos: int) -> tuple[int, int]:
    control = data[pos]
    size = control & 0x0F
    value = int.from_bytes(data[pos + 1 : pos + 1 + size], "little")
    return (-value if control & 0x80 else value), pos + 1 + size


def _tensor(data: bytes, pos: int) -> np.ndarray | None:
    """The tensor record at `pos`, or None when there is none there."""
    version, pos = _int(data, pos)
    if version != TENSOR_VERSION:
        return None
    dims = []
    for _ in range(4):
        dim, pos = _int(data, pos)
        dims.append(dim)
    count = int(np.prod(dims))
    if count <= 0 or pos + 4 * count > len(data):
        return None
    return np.frombuffer(data, "<f4", count=count, offset=pos)


def read_layers(path: Path, fc_values: int) -> list[tuple[str, np.ndarray]]:
    """(layer type, its parameters) for every layer with weights, from the input up. A `fc_`
    layer keeps a few settings before its tensor: the first record of `fc_values` is taken."""
    data = path.read_bytes()
    layers = []
    for match in LAYER_TAG.finditer(data):
        kind, start = KINDS[match.group(1)], match.end()
        window = range(start, start + 64) if kind == "fc" else [start]
        found = None
        for pos in window:
            try:
                found = _tensor(data, pos)
            except IndexError:
                found = None
            if found is not None and (kind != "fc" or found.size == fc_values):
                break
        if found is None:
            raise DlibFileError(f"{path}: no parameter tensor after the {kind} layer at byte {start}")
        layers.append((kind, found))
    return layers


def dlib_state_dict(path: Path, model: DlibResNet) -> dict[str, torch.Tensor]:
    """`model`'s state dict filled from dlib's file, each tensor checked for its size."""
    targets: list[tuple[str, list[str]]] = []  # (dlib layer type, our parameter names), input first
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Conv2d):
            targets.append(("con", [f"{name}.weight", f"{name}.bias"]))
        elif isinstance(module, Affine):
            targets.append(("affine", [f"{name}.weight", f"{name}.bias"]))
    targets.append(("fc", ["fc.weight"]))
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    layers = read_layers(path, fc_values=shapes["fc.weight"].numel())
    if [kind for kind, _ in layers] != [kind for kind, _ in targets]:
        raise DlibFileError(
            f"{path}: {len(layers)} layers with weights, not the {len(targets)} of dlib's face recognition ResNet v1"
        )
    state = {}
    for (kind, values), (_, names) in zip(layers, targets, strict=True):
        expected = sum(shapes[n].numel() for n in names)
        if values.size != expected:
            raise DlibFileError(f"{path}: a {kind} layer holds {values.size} values where {names[0]} needs {expected}")
        if kind == "fc":  # dlib keeps [inputs, outputs] and computes x @ W; torch keeps the transpose
            state[names[0]] = torch.from_numpy(values.reshape(shapes[names[0]][::-1]).T.copy())
            continue
        offset = 0
        for n in names:
            size = shapes[n].numel()
            state[n] = torch.from_numpy(values[offset : offset + size].reshape(shapes[n]).copy())
            offset += size
    return state
