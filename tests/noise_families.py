"""Small noise families for the keyed-noise tests (not part of the package)."""

import math

import torch

from noisejump.noise.base import NoiseFamily


class TwoWhiteDraws(NoiseFamily):
    """A family with a white shape larger than the sample: (e_0 + e_1) / sqrt(2)."""

    def white_shape(self, shape):
        return (shape[0], 2, *shape[1:])

    def apply(self, white, shape=None):
        return (white[:, 0] + white[:, 1]) / math.sqrt(2)


class PerChannel(NoiseFamily):
    """Diagonal noise with a standard deviation per channel (events of shape (3, ...))."""

    eigenbasis = "identity"
    std = torch.tensor([0.5, 1.0, 2.0])

    def apply(self, white, shape=None):
        return white * self.std.reshape(3, *[1] * (white.dim() - 2))

    def variance(self, event_shape):
        return (self.std**2).reshape(3, *[1] * (len(event_shape) - 1)).expand(event_shape)
