"""maskgan_jax: MaskGAN (Lee et al., CVPR 2020) in JAX/Flax, mask-guided interactive face editing.

Importing the package changes nothing in the process and imports no JAX; entry points call
`maskgan_jax.runtime.setup()`. `maskgan_jax.load_editor(path)` (maskgan_jax.api) is imported on
first use.
"""

__version__ = "0.1.0"
__all__ = ["load_editor"]


def __getattr__(name: str):
    # PEP 562: the inference API (and JAX with it) loads only when asked for.
    if name == "load_editor":
        from maskgan_jax.api import load_editor

        return load_editor
    raise AttributeError(f"module 'maskgan_jax' has no attribute {name!r}")
