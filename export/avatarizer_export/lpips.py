"""LPIPS v0.1 (Zhang et al., 2018) in PyTorch, from plain ``.npz`` weights.

The weights live in ``../shared/weights`` beside the checkout (see that
folder's README, section "weights"): ``alexnet_lpips.npz`` and
``vgg16_lpips.npz`` hold the ImageNet backbones (torchvision's, converted)
and the LPIPS v0.1 linear heads. Nothing is ever downloaded; a missing folder
or file raises :class:`FileNotFoundError` naming it.

The computation follows the reference implementation (``lpips`` package,
``LPIPS(net=..., version="0.1", lpips=True, spatial=False)``):

1. inputs in [-1, 1] are shifted by (-0.030, -0.088, -0.188) and divided by
   (0.458, 0.448, 0.450) per channel (ImageNet's mean and std mapped to
   [-1, 1]);
2. the backbone's ReLU outputs are tapped (AlexNet: relu1..relu5; VGG16:
   relu1_2, relu2_2, relu3_3, relu4_3, relu5_3);
3. each tap is unit-normalised over channels, ``f / (|f| + 1e-10)``;
4. the squared difference of the two images' taps is weighted per channel by
   the tap's 1×1 linear head (no bias), averaged over space, and the taps are
   summed.

Checked against the reference triplet in ``../shared/weights/lpips_check``
(``tests/test_metrics.py``): AlexNet gives 0.722 / 0.138, VGG16 0.569 / 0.422.

Example::

    from avatarizer_export.lpips import LPIPS, lpips_images

    model = LPIPS.from_npz(net="alex")          # ../shared/weights by default
    d = model(x, y)                             # N×3×H×W in [-1, 1] → (N,)
    d = lpips_images(render_a, render_b, model) # uint8 H×W×3/4 (or stacks)
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

__all__ = [
    "DEFAULT_WEIGHTS_DIR",
    "NETS",
    "LPIPS",
    "lpips_images",
    "images_to_tensor",
    "vgg16_features",
    "VGG16Features",
    "weights_path",
]

#: ``<repo>/../shared/weights``: where the weights are looked for by default
#: when no shared folder was given (``--shared``, ``$AVATARIZER_SHARED``:
#: :func:`avatarizer_export.paths.weights_dir`).
DEFAULT_WEIGHTS_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "weights"

#: Backbone name → (weights file, npz prefix).
NETS = {"alex": ("alexnet_lpips.npz", "AlexNet_0"), "vgg": ("vgg16_lpips.npz", "VGG16_0")}

_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
_EPS = 1e-10  # as in lpips.normalize_tensor

# AlexNet (torchvision layout): (stride, padding, max-pool before this conv).
_ALEX_CONVS = ((4, 2, False), (1, 2, True), (1, 1, True), (1, 1, False), (1, 1, False))
# VGG16: convs per block; a 2×2/2 max-pool precedes every block but the first;
# the tap is the last ReLU of each block.
_VGG_BLOCKS = (2, 2, 3, 3, 3)


def weights_path(path: str | Path | None = None, net: str = "alex") -> Path:
    """Resolves the ``.npz`` file of ``net`` from a file, a folder or ``None``
    (the shared folder's ``weights/``: :func:`avatarizer_export.paths.weights_dir`,
    by default :data:`DEFAULT_WEIGHTS_DIR`), raising ``FileNotFoundError`` if missing."""
    from .paths import weights_dir

    if net not in NETS:
        raise ValueError(f"net must be one of {sorted(NETS)}, got {net!r}.")
    filename = NETS[net][0]
    # (where a command's user sets it: `train` has no --shared option, so the option alone is no advice)
    where = ("the shared folder's weights/: that of the command's --shared where it has one, else of "
             "$AVATARIZER_SHARED, else ../shared beside the checkout" if path is None
             else "the folder given; it is the shared folder's weights/")
    path = Path(weights_dir() if path is None else path)
    if path.suffix == ".npz":
        if not path.is_file():
            raise FileNotFoundError(f"LPIPS weights file {path} not found.")
        return path
    if not path.is_dir():
        raise FileNotFoundError(
            f"LPIPS weights folder {path} not found ({where}); set AVATARIZER_SHARED to the shared folder "
            "(or, where the command has one, pass --shared). Nothing is downloaded."
        )
    file = path / filename
    if not file.is_file():
        raise FileNotFoundError(f"{file} not found: the weights folder {path} ({where}) has no {filename}.")
    return file


def _load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def _conv(weights: dict[str, np.ndarray], key: str, stride: int, padding: int) -> nn.Conv2d:
    kernel = weights[f"{key}/kernel"]  # HWIO
    kh, kw, cin, cout = kernel.shape
    conv = nn.Conv2d(cin, cout, (kh, kw), stride=stride, padding=padding)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))))
        conv.bias.copy_(torch.from_numpy(weights[f"{key}/bias"]))
    return conv


def _backbone(weights: dict[str, np.ndarray], net: str) -> nn.ModuleList:
    """The backbone as one ``nn.Sequential`` per tap (each ending at its ReLU)."""
    prefix = NETS[net][1]
    slices = nn.ModuleList()
    if net == "alex":
        for i, (stride, pad, pool) in enumerate(_ALEX_CONVS):
            layers: list[nn.Module] = [nn.MaxPool2d(3, 2)] if pool else []
            layers += [_conv(weights, f"{prefix}/Conv_{i}", stride, pad), nn.ReLU()]
            slices.append(nn.Sequential(*layers))
    else:
        i = 0
        for block, n in enumerate(_VGG_BLOCKS):
            layers = [nn.MaxPool2d(2, 2)] if block else []
            for _ in range(n):
                layers += [_conv(weights, f"{prefix}/Conv_{i}", 1, 1), nn.ReLU()]
                i += 1
            slices.append(nn.Sequential(*layers))
    return slices


class _Scaling(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.shift) / self.scale


def _check_input(x: torch.Tensor, name: str) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != 3:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be an N×3×H×W tensor in [-1, 1], got {shape}.")


class VGG16Features(nn.Module):
    """Frozen VGG16 (ImageNet) returning the five ReLU taps relu1_2, relu2_2,
    relu3_3, relu4_3, relu5_3 as a list.

    ``forward(x)`` takes N×3×H×W in [-1, 1] and applies the ImageNet
    normalisation itself (the LPIPS shift and scale) unless created with
    ``normalize_input=False`` (then ``x`` must already be normalised).
    Parameters do not require gradients and the module stays in eval mode,
    but gradients flow to the input (for a perceptual loss).
    """

    def __init__(self, slices: nn.ModuleList, normalize_input: bool = True):
        super().__init__()
        self.scaling = _Scaling() if normalize_input else None
        self.slices = slices
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "VGG16Features":  # always frozen
        return super().train(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        _check_input(x, "x")
        h = self.scaling(x) if self.scaling is not None else x
        taps = []
        for s in self.slices:
            h = s(h)
            taps.append(h)
        return taps


def vgg16_features(path: str | Path | None = None, normalize_input: bool = True) -> VGG16Features:
    """A frozen VGG16 module giving the relu1_2 … relu5_3 taps, for the
    perceptual loss of the image autoencoder.

    The paper's perceptual loss uses VGG19 features; only VGG16 weights are
    available offline (``../shared/weights/vgg16_lpips.npz``), so VGG16's
    equivalent taps stand in for them.

    Args:
        path: the weights folder or the ``vgg16_lpips.npz`` file
            (default :data:`DEFAULT_WEIGHTS_DIR`).
        normalize_input: inputs are in [-1, 1] and get ImageNet-normalised
            inside (default), or are already normalised.
    """
    weights = _load(weights_path(path, "vgg"))
    return VGG16Features(_backbone(weights, "vgg"), normalize_input=normalize_input)


class LPIPS(nn.Module):
    """LPIPS v0.1 distance. Build with :meth:`from_npz`.

    ``forward(x, y)``: two N×3×H×W tensors in [-1, 1] (``y`` may have batch
    size 1 to broadcast) → a tensor of shape (N,). Differentiable with
    respect to the inputs; the weights are frozen.
    """

    def __init__(self, slices: nn.ModuleList, heads: Sequence[torch.Tensor], net: str):
        super().__init__()
        self.net = net
        self.scaling = _Scaling()
        self.slices = slices
        for i, w in enumerate(heads):
            self.register_buffer(f"head{i}", w.view(1, -1, 1, 1).clone())
        self.n_taps = len(heads)
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    @classmethod
    def from_npz(cls, path: str | Path | None = None, net: str = "alex") -> "LPIPS":
        """Loads ``net`` ("alex" or "vgg") from a weights folder or ``.npz``
        file; ``None`` means :data:`DEFAULT_WEIGHTS_DIR` (``../shared/weights``)."""
        weights = _load(weights_path(path, net))
        slices = _backbone(weights, net)
        heads = [torch.from_numpy(weights[f"NetLinLayer_{i}/Conv_0/kernel"].reshape(-1).copy())
                 for i in range(len(slices))]
        for i, (s, h) in enumerate(zip(slices, heads)):
            channels = [m for m in s if isinstance(m, nn.Conv2d)][-1].out_channels
            if h.numel() != channels:
                raise ValueError(f"head {i} has {h.numel()} weights for {channels} channels in {path}.")
        return cls(slices, heads, net)

    def train(self, mode: bool = True) -> "LPIPS":  # no dropout or batch norm: always eval
        return super().train(False)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Unit-normalised taps of ``x`` (N×3×H×W in [-1, 1])."""
        h = self.scaling(x)
        out = []
        for s in self.slices:
            h = s(h)
            out.append(h / (torch.sqrt(torch.sum(h * h, dim=1, keepdim=True)) + _EPS))
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        _check_input(x, "x")
        _check_input(y, "y")
        if x.shape[2:] != y.shape[2:]:
            raise ValueError(f"x and y must have the same size, got {tuple(x.shape)} and {tuple(y.shape)}.")
        fx, fy = self.features(x), self.features(y)
        total = 0.0
        for i, (a, b) in enumerate(zip(fx, fy)):
            w = getattr(self, f"head{i}")
            total = total + ((a - b) ** 2 * w).sum(dim=1).mean(dim=(1, 2))
        return total


def images_to_tensor(images) -> torch.Tensor:
    """uint8 H×W×3/4 image, N×H×W×3/4 stack or list of them → N×3×H×W
    float32 tensor in [-1, 1] (``img / 127.5 - 1``, as the reference's
    ``im2tensor``); RGBA is composited on white first."""
    from .images import composite_white  # numpy only

    if isinstance(images, (list, tuple)):
        arr = np.stack([composite_white(im) for im in images])
    else:
        arr = composite_white(images)
        if arr.ndim == 3:
            arr = arr[None]
    # composite_white gives [0, 1] floats; x * 2 - 1 == img / 127.5 - 1.
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(0, 3, 1, 2) * 2.0 - 1.0, dtype=np.float32))


def lpips_images(a_uint8, b_uint8, model: LPIPS, batch_size: int = 32):
    """LPIPS between uint8 images (RGBA composited on white).

    ``a_uint8`` and ``b_uint8``: each an H×W×3/4 image, an N×H×W×3/4 stack
    or a list of images (all of one size). Returns a float for a single pair
    and a float32 numpy array of shape (N,) otherwise. Runs without gradients
    in chunks of ``batch_size`` on the model's device.
    """
    single = not isinstance(a_uint8, (list, tuple)) and np.asarray(a_uint8).ndim == 3
    ta, tb = images_to_tensor(a_uint8), images_to_tensor(b_uint8)
    if ta.shape != tb.shape:
        raise ValueError(f"image shapes differ: {tuple(ta.shape)} vs {tuple(tb.shape)} (N×C×H×W).")
    device = next(model.buffers()).device
    out = []
    with torch.no_grad():
        for i in range(0, len(ta), batch_size):
            out.append(model(ta[i:i + batch_size].to(device), tb[i:i + batch_size].to(device)).cpu())
    d = torch.cat(out).numpy().astype(np.float32) if out else np.zeros(0, np.float32)
    return float(d[0]) if single else d
