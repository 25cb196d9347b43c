"""MaskVAE: the variational auto-encoder over semantic masks (MaskGAN section 4).

The encoder maps a one-hot mask (N, H, W, num_classes) to the mean and log-variance of a latent
z (N, latent_dim); the decoder maps z back to per-pixel class logits (N, H, W, num_classes).
EBST edits masks by moving along z between two encoded masks and decoding with argmax.

Architecture (reference defaults: 19 classes, 512x512, latent 1024, widths 32..2048):
  encoder: n_down = log2(resolution / 4) blocks of [conv 4x4 stride 2 zero-pad 1, BatchNorm,
           LeakyReLU 0.2], widths base_width * 2**i capped at max_width, down to 4x4; flatten;
           two Dense heads -> mean and logvar.
  decoder: Dense latent -> 4*4*w_top (w_top = the encoder's last width) and reshape; n_down - 1
           blocks of [nearest x2, edge (replication) pad 1, conv 3x3, BatchNorm, LeakyReLU 0.2]
           whose widths mirror the encoder's in reverse; then nearest x2, edge pad 1, conv 3x3 ->
           num_classes logits (no norm, no activation).
At the defaults this has 170,619,571 parameters (tests/test_mask_vae.py checks the number).

Layout note: the flatten before the heads and the reshape after the decoder Dense use NHWC order
(h, w, c), where the PyTorch reference would use NCHW (c, h, w). The two orders differ only by a
fixed permutation of the Dense weights; no public MaskVAE weights exist, so nothing needs
converting.

BatchNorm mirrors PyTorch's defaults (momentum 0.1 there = 0.9 here, eps 1e-5) and keeps its
running statistics in the 'batch_stats' collection. One difference: PyTorch updates its running
variance with the unbiased batch variance, Flax with the biased one (a factor n/(n-1) on
n = N*H*W samples, immaterial at these sizes).
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from maskgan_jax.models.layers import Dtype, conv_kernel_init, edge_pad, upsample_nearest_2x

_LEAKY_SLOPE = 0.2
_BN_MOMENTUM = 0.9  # PyTorch BatchNorm2d momentum=0.1 weighs the new batch by 0.1.
_BN_EPS = 1e-5
_BOTTOM = 4  # spatial size of the encoder's output and the decoder's first feature map


class MaskVAE(nn.Module):
    """Variational auto-encoder over one-hot masks.

    Attributes:
      num_classes: channels of the one-hot input and of the output logits.
      resolution: input/output height and width; a power of two >= 8.
      latent_dim: size of z.
      base_width: width of the first encoder conv; doubles per block.
      max_width: cap on the widths.
      dtype: compute dtype of convs, Dense layers and BatchNorm (parameters and BatchNorm
        statistics stay float32); outputs are returned as float32.

    Usage:
      variables = MaskVAE().init({'params': k1, 'reparam': k2}, mask_onehot, train=False)
      (logits, mean, logvar), updates = MaskVAE().apply(
          variables, mask_onehot, train=True, rngs={'reparam': key}, mutable=['batch_stats'])
      mean, logvar = MaskVAE().apply(variables, mask_onehot, False, method=MaskVAE.encode)
      logits = MaskVAE().apply(variables, z, False, method=MaskVAE.decode)
    With train=True the 'batch_stats' collection must be mutable (running statistics update);
    with train=False BatchNorm normalises with the running statistics.
    """

    num_classes: int = 19
    resolution: int = 512
    latent_dim: int = 1024
    base_width: int = 32
    max_width: int = 2048
    dtype: Dtype = jnp.float32

    def _num_down(self) -> int:
        """Encoder blocks: log2(resolution / 4); the decoder has one block fewer plus its head."""
        n_down = round(math.log2(self.resolution / _BOTTOM)) if self.resolution > 0 else -1
        if n_down < 1 or _BOTTOM * 2**n_down != self.resolution:
            raise ValueError(
                f"MaskVAE.resolution must be a power of two >= {2 * _BOTTOM}, "
                f"got {self.resolution}")
        return n_down

    def _widths(self) -> list[int]:
        """Encoder widths, first block first: base_width * 2**i capped at max_width."""
        if self.base_width < 1 or self.max_width < 1:
            raise ValueError(
                f"MaskVAE.base_width and MaskVAE.max_width must be >= 1, "
                f"got {self.base_width} and {self.max_width}")
        return [min(self.base_width * 2**i, self.max_width) for i in range(self._num_down())]

    def setup(self):
        # Submodule names (parameter paths): enc_convs_i, enc_bns_i, enc_mean, enc_logvar, dec_fc,
        # dec_convs_j, dec_bns_j, dec_out.
        widths = self._widths()
        bn = dict(momentum=_BN_MOMENTUM, epsilon=_BN_EPS, dtype=self.dtype)
        self.enc_convs = [
            nn.Conv(w, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)),
                    kernel_init=conv_kernel_init, dtype=self.dtype) for w in widths]
        self.enc_bns = [nn.BatchNorm(**bn) for _ in widths]
        self.enc_mean = nn.Dense(self.latent_dim, dtype=self.dtype)
        self.enc_logvar = nn.Dense(self.latent_dim, dtype=self.dtype)
        self.dec_fc = nn.Dense(_BOTTOM * _BOTTOM * widths[-1], dtype=self.dtype)
        # Decoder block j maps widths[-1-j] -> widths[-2-j]; the head reads widths[0].
        dec_widths = widths[-2::-1]
        self.dec_convs = [
            nn.Conv(w, (3, 3), padding="VALID", kernel_init=conv_kernel_init, dtype=self.dtype)
            for w in dec_widths]
        self.dec_bns = [nn.BatchNorm(**bn) for _ in dec_widths]
        self.dec_out = nn.Conv(self.num_classes, (3, 3), padding="VALID",
                               kernel_init=conv_kernel_init, dtype=self.dtype)

    def encode(self, mask_onehot: jax.Array, train: bool) -> tuple[jax.Array, jax.Array]:
        """Posterior parameters of z given a mask.

        Args:
          mask_onehot: (N, resolution, resolution, num_classes) float, one-hot (values 0/1; soft
            masks are accepted too).
          train: BatchNorm uses batch statistics and updates 'batch_stats' when True.
        Returns:
          mean, logvar: each (N, latent_dim) float32, unbounded.
        """
        expected = (self.resolution, self.resolution, self.num_classes)
        if mask_onehot.ndim != 4 or tuple(mask_onehot.shape[1:]) != expected:
            raise ValueError(
                f"MaskVAE.encode expects mask_onehot of shape (N, {expected[0]}, {expected[1]}, "
                f"{expected[2]}) (fields resolution, num_classes), got {mask_onehot.shape}")
        x = mask_onehot.astype(self.dtype)
        for conv, bn in zip(self.enc_convs, self.enc_bns):
            x = nn.leaky_relu(bn(conv(x), use_running_average=not train), _LEAKY_SLOPE)
        x = x.reshape(x.shape[0], -1)  # NHWC flatten (see module docstring)
        return (self.enc_mean(x).astype(jnp.float32),
                self.enc_logvar(x).astype(jnp.float32))

    def decode(self, z: jax.Array, train: bool) -> jax.Array:
        """Mask logits given a latent.

        Args:
          z: (N, latent_dim) float.
          train: BatchNorm uses batch statistics and updates 'batch_stats' when True.
        Returns:
          (N, resolution, resolution, num_classes) float32 unnormalised logits; argmax over the
          last axis gives a label map.
        """
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(
                f"MaskVAE.decode expects z of shape (N, {self.latent_dim}) (field latent_dim), "
                f"got {z.shape}")
        x = self.dec_fc(z.astype(self.dtype))
        x = x.reshape(x.shape[0], _BOTTOM, _BOTTOM, -1)  # NHWC (see module docstring)
        for conv, bn in zip(self.dec_convs, self.dec_bns):
            # After nearest x2 the border rows come in equal pairs, so edge and reflect padding
            # coincide here; edge is the reference's (ReplicationPad2d).
            x = conv(edge_pad(upsample_nearest_2x(x), 1))
            x = nn.leaky_relu(bn(x, use_running_average=not train), _LEAKY_SLOPE)
        return self.dec_out(edge_pad(upsample_nearest_2x(x), 1)).astype(jnp.float32)

    def sample_latent(self, mean: jax.Array, logvar: jax.Array) -> jax.Array:
        """Reparameterised draw z = mean + eps * exp(0.5 * logvar), eps ~ N(0, I).

        eps comes from the rng stream 'reparam' (pass rngs={'reparam': key} to apply).
        Args:
          mean, logvar: (N, latent_dim).
        Returns:
          z: (N, latent_dim), same dtype as mean.
        """
        eps = jax.random.normal(self.make_rng("reparam"), mean.shape, mean.dtype)
        return mean + eps * jnp.exp(0.5 * logvar)

    def __call__(self, mask_onehot: jax.Array, train: bool
                 ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Encode, draw z with the 'reparam' rng stream, decode.

        Call as module.apply(variables, mask_onehot, train, rngs={'reparam': key}, ...).
        Args:
          mask_onehot: (N, resolution, resolution, num_classes) float one-hot.
          train: BatchNorm mode (see class docstring).
        Returns:
          logits (N, resolution, resolution, num_classes), mean (N, latent_dim),
          logvar (N, latent_dim).
        """
        mean, logvar = self.encode(mask_onehot, train)
        z = self.sample_latent(mean, logvar)
        return self.decode(z, train), mean, logvar
