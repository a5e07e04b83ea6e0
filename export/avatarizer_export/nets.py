"""The networks of the cross-modal latent alignment method (PyTorch, export side).

E_s / D_s  image autoencoder on aligned crops (CNN encoder, transposed-conv decoder)
E_t / D_t  parameter autoencoder on the face slice of avatar vectors (MLPs)
F          mapper, one hidden layer, z_s -> z_m; its last layer has E_t's
           last layer's shape so the weight-alignment loss L_w can tie them
H          attribute heads on E_s features (see attributes.py)

Sizes are set for real-time CPU inference and a small download: E_s at 96 px
is ~45 MFLOPs; E_s + F + D_t hold 2.6 M parameters (5 MB in fp16).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

LATENT = 512


@dataclass
class NetConfig:
    image_size: int = 96
    width: int = 24  # channels of the first stage; doubles per stage
    stages: int = 4
    bottleneck: int = 32  # 1x1 conv before the fully connected layer (keeps the model a few MB)
    latent: int = LATENT
    face_dim: int = 483
    t_hidden: int = 512

    def to_dict(self):
        return asdict(self)


def _block(cin, cout, stride):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.LeakyReLU(0.2, inplace=True))


class ImageEncoder(nn.Module):
    """E_s: N x 3 x S x S in [-1, 1] -> N x 512."""

    def __init__(self, cfg: NetConfig):
        super().__init__()
        layers, c = [], 3
        for i in range(cfg.stages):
            w = cfg.width * 2 ** i
            layers += [_block(c, w, 2), _block(w, w, 1)]
            c = w
        layers += [nn.Conv2d(c, cfg.bottleneck, 1, bias=False), nn.BatchNorm2d(cfg.bottleneck),
                   nn.LeakyReLU(0.2, inplace=True)]
        self.features = nn.Sequential(*layers)
        self.side = cfg.image_size // 2 ** cfg.stages
        self.fc = nn.Linear(cfg.bottleneck * self.side * self.side, cfg.latent)

    def forward(self, x):
        return self.fc(torch.flatten(self.features(x), 1))


class ImageDecoder(nn.Module):
    """D_s: N x 512 -> N x 3 x S x S in [-1, 1] (transposed convolutions)."""

    def __init__(self, cfg: NetConfig):
        super().__init__()
        c = cfg.width * 2 ** (cfg.stages - 1)
        self.side = cfg.image_size // 2 ** cfg.stages
        self.b = cfg.bottleneck
        self.fc = nn.Linear(cfg.latent, cfg.bottleneck * self.side * self.side)
        layers = [nn.Conv2d(cfg.bottleneck, c, 1), nn.LeakyReLU(0.2, True)]
        for i in range(cfg.stages - 1, 0, -1):
            w = cfg.width * 2 ** (i - 1)
            layers += [nn.ConvTranspose2d(c, w, 4, 2, 1, bias=False), nn.BatchNorm2d(w), nn.LeakyReLU(0.2, True),
                       _block(w, w, 1)]
            c = w
        layers += [nn.ConvTranspose2d(c, 16, 4, 2, 1), nn.LeakyReLU(0.2, True), nn.Conv2d(16, 3, 3, 1, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z):
        return self.net(self.fc(z).view(-1, self.b, self.side, self.side))


class ParamEncoder(nn.Module):
    """E_t: face slice (normalised) -> 512. Its last layer is 512 x 512."""

    def __init__(self, cfg: NetConfig):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(cfg.face_dim, cfg.t_hidden), nn.LeakyReLU(0.2, True),
                                  nn.Linear(cfg.t_hidden, cfg.latent), nn.LeakyReLU(0.2, True))
        self.last = nn.Linear(cfg.latent, cfg.latent)

    def forward(self, y):
        return self.last(self.body(y))


class ParamDecoder(nn.Module):
    """D_t: 512 -> face slice (normalised, tanh to [-1, 1])."""

    def __init__(self, cfg: NetConfig):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(cfg.latent, cfg.t_hidden), nn.LeakyReLU(0.2, True),
                                 nn.Linear(cfg.t_hidden, cfg.t_hidden), nn.LeakyReLU(0.2, True),
                                 nn.Linear(cfg.t_hidden, cfg.face_dim), nn.Tanh())

    def forward(self, z):
        return self.net(z)


class Mapper(nn.Module):
    """F: z_s -> z_m, one hidden layer; ``last`` has E_t.last's shape."""

    def __init__(self, cfg: NetConfig):
        super().__init__()
        self.hidden = nn.Sequential(nn.Linear(cfg.latent, cfg.latent), nn.LeakyReLU(0.2, True))
        self.last = nn.Linear(cfg.latent, cfg.latent)

    def forward(self, z):
        return self.last(self.hidden(z))


class DirectRegressor(nn.Module):
    """Baseline: the same encoder trained end to end to the face parameters."""

    def __init__(self, cfg: NetConfig):
        super().__init__()
        self.encoder = ImageEncoder(cfg)
        self.head = nn.Sequential(nn.LeakyReLU(0.2, True), nn.Linear(cfg.latent, cfg.face_dim), nn.Tanh())

    def forward(self, x):
        return self.head(self.encoder(x))


class ImageToFace(nn.Module):
    """The deployed graph: crop -> E_s -> F -> D_t -> face slice (normalised)."""

    def __init__(self, enc: ImageEncoder, mapper: Mapper, dec: ParamDecoder):
        super().__init__()
        self.enc, self.mapper, self.dec = enc, mapper, dec

    def forward(self, x):
        return self.dec(self.mapper(self.enc(x)))


def weight_alignment(mapper: Mapper, et: ParamEncoder) -> torch.Tensor:
    """L_w = ||theta_F,last - theta_Et,last||^2 (weights and biases)."""
    return ((mapper.last.weight - et.last.weight) ** 2).sum() + ((mapper.last.bias - et.last.bias) ** 2).sum()


def cross_modal(zm: torch.Tensor, zt: torch.Tensor, use_mse=True, use_cos=True) -> torch.Tensor:
    """L_cm = MSE(z_m, z_t) + (1 - cos(z_m, z_t))."""
    loss = zm.new_zeros(())
    if use_mse:
        loss = loss + ((zm - zt) ** 2).mean()
    if use_cos:
        loss = loss + (1 - torch.nn.functional.cosine_similarity(zm, zt, dim=1)).mean()
    return loss
