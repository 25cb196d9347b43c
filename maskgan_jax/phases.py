"""MaskGAN's training phases, in order, and which networks each one trains or reads frozen.

    maskvae   MaskVAE pretraining
    dmn       Dense Mapping Network training (G and D)
    ebst      Editing Behavior Simulated Training (G, D and the blender; the MaskVAE frozen)
    parser    the face parser (image -> mask), which the editing evaluation runs on edited faces, and
              beside it the attribute classifier (image -> attribute logits; maskgan_jax.celeba_protocol)

The parser is independent of the other phases; it comes last so that the phases before it keep their
positions, which seed their data order (data.pipeline_config): adding it changed nothing they compute.
"""

from __future__ import annotations

PHASES = ("maskvae", "dmn", "ebst", "parser")
# Networks each phase trains, and those it uses frozen.
TRAINED = {"maskvae": ("mask_vae",), "dmn": ("generator", "discriminator"),
           "ebst": ("generator", "discriminator", "blender"), "parser": ("parser", "classifier")}
FROZEN = {"maskvae": (), "dmn": (), "ebst": ("mask_vae",), "parser": ()}
# Where a network comes from when a phase starts: the phase that last trained it.
SOURCE_PHASE = {"mask_vae": "maskvae", "generator": "dmn", "discriminator": "dmn", "parser": "parser",
                "classifier": "parser"}
# Optimiser states that cover more than their own network: in EBST the blender's holds stage 2's joint
# Adam over G_A and B (the reference's optimizer_GB); G_A keeps its own state for stage 1.
JOINT_OPTIMIZER = {"ebst": {"blender": ("generator", "blender")}}
# Phases whose checkpoints hold a generator to edit with, the most trained first.
GENERATOR_PHASES = ("ebst", "dmn")
