"""maskgan_jax: MaskGAN (Lee et al., CVPR 2020) in JAX/Flax, mask-guided interactive face editing.

Importing the package changes nothing in the process; entry points call `maskgan_jax.runtime.setup()`.
"""

__version__ = "0.1.0"
