"""Networks from the config, and the train state of each network: parameters, optimiser state and
(for the MaskVAE) BatchNorm statistics.

States are created sharded: `jax.eval_shape` of the init gives the abstract state, the sharding
rules give its shardings, and `jax.jit(init, out_shardings=...)` materialises it in place on the mesh.
"""

from __future__ import annotations

import dataclasses
from typing import Any
from collections.abc import Callable

import flax
import jax
import ml_collections
import optax

from maskgan_jax import sharding as sharding_lib
from maskgan_jax.models import (AlphaBlender, AttributeClassifier, DenseMappingNetwork, MaskVAE,
                                MultiScaleDiscriminator, UNet, registry)

# The networks MaskGAN trains, by config block (`config.model.<name>`). The order fixes each
# network's init key (`init_rng`): append, never reorder.
NETWORKS = ("generator", "discriminator", "mask_vae", "blender", "parser", "classifier")


@flax.struct.dataclass
class NetState:
    """One network's trainable state.

    params: the `params` collection. opt_state: its optax state (None for a frozen network).
    batch_stats: the `batch_stats` collection ({} for networks without BatchNorm).
    """

    params: Any
    opt_state: Any
    batch_stats: Any

    def variables(self) -> dict[str, Any]:
        """The variables dict flax's `apply` takes."""
        if self.batch_stats:
            return {"params": self.params, "batch_stats": self.batch_stats}
        return {"params": self.params}


@dataclasses.dataclass(frozen=True)
class Networks:
    """The trainable modules, built from `config.model`."""

    generator: DenseMappingNetwork
    discriminator: MultiScaleDiscriminator
    mask_vae: MaskVAE
    blender: AlphaBlender
    parser: UNet
    classifier: AttributeClassifier


def build_networks(config: ml_collections.ConfigDict) -> Networks:
    """Every network of NETWORKS from its `config.model` block, through the registry."""
    return Networks(**{name: registry.build_network(config, name) for name in NETWORKS})


DECAY_SHAPES = ("linear", "cosine")


def learning_rate_schedule(phase: ml_collections.ConfigDict) -> optax.Schedule:
    """Step -> learning rate: a linear warmup from 0 over the first `warmup_fraction` of the phase, the
    constant `learning_rate`, then a decay to 0 over the last `decay_fraction` (`decay_shape` 'linear':
    pix2pixHD's; 'cosine': a half cosine). Warmup 0 and a linear decay are pix2pixHD's schedule.

    Raises ValueError naming the field when a fraction is outside [0, 1], the two overlap or the shape
    is unknown.
    """
    if phase.decay_shape not in DECAY_SHAPES:
        raise ValueError(f"phase.decay_shape: expected one of {DECAY_SHAPES}, got {phase.decay_shape!r}")
    for field in ("warmup_fraction", "decay_fraction"):
        if not 0.0 <= phase[field] <= 1.0:
            raise ValueError(f"phase.{field}: expected a fraction in [0, 1], got {phase[field]!r}")
    if phase.warmup_fraction + phase.decay_fraction > 1.0:
        raise ValueError(f"phase.warmup_fraction + phase.decay_fraction: expected at most 1, got "
                         f"{phase.warmup_fraction} + {phase.decay_fraction}")
    warmup_steps = int(round(phase.num_steps * phase.warmup_fraction))
    decay_steps = int(round(phase.num_steps * phase.decay_fraction))
    decay_begin = phase.num_steps - decay_steps
    if phase.decay_shape == "linear":
        decay = optax.linear_schedule(phase.learning_rate, 0.0, max(decay_steps, 1))
    else:
        decay = optax.cosine_decay_schedule(phase.learning_rate, max(decay_steps, 1))
    # join_schedules hands each piece the steps since its boundary.
    pieces = [optax.constant_schedule(phase.learning_rate), decay]
    boundaries = [decay_begin]
    if warmup_steps:
        pieces.insert(0, optax.linear_schedule(0.0, phase.learning_rate, warmup_steps))
        boundaries.insert(0, warmup_steps)
    return optax.join_schedules(pieces, boundaries)


def optimizer(phase: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """Adam with the phase's betas, its learning rate a hyperparameter held in the optimiser state.

    The step sets that rate from the phase's schedule at the loop step before each update
    (`steps.apply_gradients`), so it follows the loop whatever the number of updates per step (EBST
    updates G and D in both stages), and the state records the rate actually applied.
    """
    # Only the rate lives in the state; the betas and eps stay constants of the compiled step, as in
    # optax.adam itself (so the arithmetic of every update is unchanged).
    adam = optax.inject_hyperparams(optax.adam, static_args=("b1", "b2", "eps"))
    return adam(learning_rate=phase.learning_rate, b1=phase.b1, b2=phase.b2, eps=phase.eps)


def init_rng(name: str, config: ml_collections.ConfigDict) -> jax.Array:
    """The PRNG key network `name` is initialised from: config.seed folded with its index in NETWORKS."""
    return jax.random.fold_in(jax.random.key(config.seed), NETWORKS.index(name))


def init_variables(name: str, networks: Networks, config: ml_collections.ConfigDict,
                   rng: jax.Array) -> dict[str, Any]:
    """Initial variables of network `name` (see NETWORKS)."""
    if name not in NETWORKS:
        raise ValueError(f"unknown network {name!r}; expected one of {NETWORKS}")
    return registry.init_variables(config, name, getattr(networks, name), rng)


def new_net_state(variables: dict[str, Any], tx: optax.GradientTransformation | None) -> NetState:
    params = variables["params"]
    return NetState(params=params, opt_state=tx.init(params) if tx is not None else None,
                    batch_stats=variables.get("batch_stats", {}))


def create_sharded(make: Callable[[], Any], mesh: jax.sharding.Mesh, min_sharded_size: int) -> tuple[Any, Any]:
    """Runs `make` (a pure function of nothing, returning a pytree) directly into its shardings.

    min_sharded_size: see `sharding.state_shardings` (config.mesh.fsdp_min_weight_size).
    Returns:
      (state, shardings): the materialised pytree and its NamedShardings.
    """
    abstract = jax.eval_shape(make)
    shardings = sharding_lib.state_shardings(abstract, mesh, min_sharded_size)
    return jax.jit(make, out_shardings=shardings)(), shardings


def _state_maker(name: str, networks: Networks, config: ml_collections.ConfigDict,
                 tx: optax.GradientTransformation | None,
                 optimized: tuple[str, ...] | None) -> Callable[[], NetState]:
    """A pure function of nothing that returns network `name`'s fresh state (see `create_state`)."""

    def make() -> NetState:
        variables = init_variables(name, networks, config, init_rng(name, config))
        if optimized is None or tx is None:
            return new_net_state(variables, tx)
        covered = {other: variables["params"] if other == name else
                   init_variables(other, networks, config, init_rng(other, config))["params"] for other in optimized}
        return NetState(params=variables["params"], opt_state=tx.init(covered),
                        batch_stats=variables.get("batch_stats", {}))

    return make


def create_state(name: str, networks: Networks, config: ml_collections.ConfigDict,
                 tx: optax.GradientTransformation | None, mesh: jax.sharding.Mesh,
                 optimized: tuple[str, ...] | None = None) -> tuple[NetState, Any]:
    """Network `name`'s fresh state, created directly in its shardings on `mesh`: initial variables from
    `init_rng`, and the optimiser state of `tx` (None: a frozen network, no optimiser state).

    optimized: the networks whose parameters the optimiser state covers, as {name: params} (default:
    `name` alone, the state over its own params; see phases.JOINT_OPTIMIZER). Returns (state, shardings).
    """
    make = _state_maker(name, networks, config, tx, optimized)
    return create_sharded(make, mesh, config.mesh.fsdp_min_weight_size)


def restored_state(name: str, networks: Networks, config: ml_collections.ConfigDict,
                   tx: optax.GradientTransformation | None, mesh: jax.sharding.Mesh,
                   restore: Callable[[dict[str, Any]], dict[str, Any]]) -> tuple[NetState, Any]:
    """Network `name`'s state with variables from `restore` and a fresh optimiser state, without
    initialising the network: only the shapes of its init are traced (`jax.eval_shape`), so a phase
    that starts from checkpoints neither compiles nor runs the inits it would overwrite (nor holds
    both copies at once).

    restore: {'params'[, 'batch_stats']: ShapeDtypeStructs with shardings} -> the same, as arrays.
    The optimiser state is `tx.init` of the restored params, in its shardings (Adam's starts at zero
    whatever the params). Returns (state, shardings), as `create_state`.
    """
    abstract = jax.eval_shape(_state_maker(name, networks, config, tx, None))
    shardings = sharding_lib.state_shardings(abstract, mesh, config.mesh.fsdp_min_weight_size)
    target = {"params": abstract_with_shardings(abstract.params, shardings.params)}
    if abstract.batch_stats:
        target["batch_stats"] = abstract_with_shardings(abstract.batch_stats, shardings.batch_stats)
    variables = restore(target)
    opt_state = None if tx is None else jax.jit(tx.init, out_shardings=shardings.opt_state)(variables["params"])
    return NetState(params=variables["params"], opt_state=opt_state,
                    batch_stats=variables.get("batch_stats", {})), shardings


def abstract_with_shardings(abstract: Any, shardings: Any) -> Any:
    """ShapeDtypeStructs carrying shardings: the restore target that lets orbax reshard on load."""
    return jax.tree_util.tree_map(
        lambda leaf, s: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=s), abstract, shardings)
