"""maskgan_jax: MaskGAN (Lee et al., CVPR 2020) in JAX/Flax, mask-guided interactive face editing."""

import os
import sys

# XLA:CPU in this jaxlib routes convolutions to YNNPACK by default, which is 3-5x slower on the
# few-channel convs of these networks and gave fp32 gradients 1e-2 off float64; keeping YNNPACK for
# matmuls only fixes both. The flag only reaches XLA if set before JAX initialises, so it is set here,
# once, unless the user already chose a value (or opted out with MASKGAN_JAX_KEEP_XLA_FLAGS=1).
_YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
if ("jax" not in sys.modules and not os.environ.get("MASKGAN_JAX_KEEP_XLA_FLAGS")
        and _YNN_FLAG not in os.environ.get("XLA_FLAGS", "")):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_YNN_FLAG}=individual_dot".strip()

__version__ = "0.1.0"
