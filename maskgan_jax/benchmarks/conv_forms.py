r"""Each conv of a training step, timed in the fast (XLA:CPU) and the plain forms of `maskgan_jax.ops`.

    python -m maskgan_jax.benchmarks.conv_forms                            # quickstart DMN and EBST steps
    python -m maskgan_jax.benchmarks.conv_forms --variant=paper --resolution=256 --phases=dmn

The step of each phase (`train.compile_steps`, as `step_speed` builds it) is traced once in the plain
forms with `plain.conv2d` and `plain.upsample_phases` recording their arguments' shapes; every distinct
conv is then timed on its own, forward and forward+backward (both gradients, against a fixed random
cotangent), in each form. The table lists them by the fast form's time times the number of calls per
step, so its top rows are where a step's conv time goes, and `fast/plain` shows which layers the fast
forms do not help. Only convs are timed: norms, pads and the losses are not.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import statistics
import sys
from collections.abc import Callable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from maskgan_jax import runtime
from maskgan_jax.benchmarks.common import load_config, time_once

VARIANTS = {"paper": "", "quickstart": "quickstart", "smoke": "smoke"}


@dataclasses.dataclass(frozen=True)
class ConvShape:
    """One conv call: `kind` 'conv' (ops.conv2d) or 'up' (the k3/s2 transposed conv)."""

    kind: str
    x_shape: tuple[int, ...]
    kernel_shape: tuple[int, ...]
    stride: int = 1
    padding: int = 0

    def describe(self) -> str:
        k = self.kernel_shape
        what = f"{k[0]}x{k[1]} {k[2]}->{k[3]}"
        return f"{what} s{self.stride} p{self.padding}" if self.kind == "conv" else f"{what} transposed s2"


@contextlib.contextmanager
def recording_convs() -> Iterator[collections.Counter]:
    """Counts the plain forms' conv calls traced inside the context, by ConvShape."""
    from maskgan_jax.ops import plain

    calls: collections.Counter = collections.Counter()
    conv2d, upsample = plain.conv2d, plain.upsample_phases

    def recorded_conv2d(x, kernel, bias=None, stride=1, padding=0):
        calls[ConvShape("conv", tuple(x.shape), tuple(kernel.shape), stride, padding)] += 1
        return conv2d(x, kernel, bias, stride, padding)

    def recorded_upsample(x, kernel):
        calls[ConvShape("up", tuple(x.shape), tuple(kernel.shape))] += 1
        return upsample(x, kernel)

    plain.conv2d, plain.upsample_phases = recorded_conv2d, recorded_upsample
    try:
        yield calls
    finally:
        plain.conv2d, plain.upsample_phases = conv2d, upsample


def step_convs(config, phase: str) -> collections.Counter:
    """The convs traced by each stage of `phase`'s training step, with their counts (all stages)."""
    from maskgan_jax import phases, sharding, state, steps, train  # (after runtime.setup)
    from maskgan_jax.benchmarks.step_speed import _batch, _random_vgg_params

    config = config.copy_and_resolve_references()
    config.model.layer_forms = "plain"
    networks = state.build_networks(config)
    mesh = sharding.create_mesh(config.mesh)
    txs = {name: state.optimizer(config.phases[phase]) for name in phases.TRAINED[phase]}
    states, shardings = train.fresh_states(phase, networks, config, txs, mesh)
    replicated = sharding.replicated(mesh)
    guard = steps.Guard.create()
    guard_shardings = jax.tree_util.tree_map(lambda _: replicated, guard)
    batch = jax.device_put(_batch(config), sharding.batch_sharding(mesh))
    vgg = _random_vgg_params() if config.loss.weights.perceptual else None
    with recording_convs() as calls:
        for fn in train.compile_steps(phase, networks, config, txs, shardings, guard_shardings, mesh):
            fn.lower(states, guard, batch, np.int32(0), vgg)  # traced, not compiled
    return calls


def conv_function(shape: ConvShape) -> Callable[[jax.Array, jax.Array], jax.Array]:
    from maskgan_jax import ops

    if shape.kind == "up":
        return lambda x, k: ops.upsample_conv_transpose(x, k)
    return lambda x, k: ops.conv2d(x, k, None, shape.stride, shape.padding)


def time_forms(shape: ConvShape, forms: str, repeats: int) -> tuple[float, float]:
    """Median seconds of the forward and of forward+backward (input and kernel gradients) in `forms`."""
    from maskgan_jax import ops

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal(shape.x_shape), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal(shape.kernel_shape) * 0.1, jnp.float32)
    conv = conv_function(shape)
    with ops.layer_forms(forms):  # the forms are read when jit traces, inside this context
        forward = jax.jit(conv).lower(x, kernel).compile()
        cotangent = jnp.asarray(rng.standard_normal(jax.eval_shape(conv, x, kernel).shape), jnp.float32)

        def forward_backward(x, kernel):
            _, pullback = jax.vjp(conv, x, kernel)
            return pullback(cotangent)

        both = jax.jit(forward_backward).lower(x, kernel).compile()
    time_once(lambda: forward(x, kernel))
    time_once(lambda: both(x, kernel))
    fwd, fwd_bwd = [], []
    for _ in range(repeats):
        fwd.append(time_once(lambda: forward(x, kernel)))
        fwd_bwd.append(time_once(lambda: both(x, kernel)))
    return statistics.median(fwd), statistics.median(fwd_bwd)


def format_table(rows: Sequence[tuple[str, ConvShape, int, tuple[float, float], tuple[float, float]]]) -> str:
    lines = ["| phase | conv | input | calls/step | fast fwd ms | fast fwd+bwd ms | plain fwd ms | "
             "plain fwd+bwd ms | fast/plain (fwd+bwd) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for phase, shape, count, fast, plain in rows:
        lines.append(f"| {phase} | {shape.describe()} | {'x'.join(map(str, shape.x_shape))} | {count} | "
                     f"{fast[0] * 1e3:.2f} | {fast[1] * 1e3:.2f} | {plain[0] * 1e3:.2f} | {plain[1] * 1e3:.2f} | "
                     f"{fast[1] / plain[1]:.2f} |")
    for phase in dict.fromkeys(r[0] for r in rows):
        fast_total = sum(c * f[1] for p, _, c, f, _ in rows if p == phase)
        plain_total = sum(c * q[1] for p, _, c, _, q in rows if p == phase)
        lines.append(f"| {phase} | all convs, calls x fwd+bwd | | | | {fast_total * 1e3:.1f} | | "
                     f"{plain_total * 1e3:.1f} | {fast_total / plain_total:.2f} |")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/ebst.py")
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="quickstart")
    parser.add_argument("--resolution", type=int, default=None, help="default: the variant's")
    parser.add_argument("--phases", default="dmn,ebst", help="comma-separated, of maskvae, dmn, ebst, parser")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--set", action="append", default=[], help="config override KEY=VALUE (repeatable)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    runtime.setup()
    if jax.default_backend() != "cpu":
        print("conv_forms: the fast forms are XLA:CPU forms; run on the CPU backend (JAX_PLATFORMS=cpu)",
              file=sys.stderr)
        return 2
    config = load_config(f"{args.config}:{VARIANTS[args.variant]}", args.set)
    if args.resolution:
        config.resolution = args.resolution
    rows = []
    for phase in args.phases.split(","):
        for shape, count in step_convs(config, phase).items():
            rows.append((phase, shape, count, time_forms(shape, "fast", args.repeats),
                         time_forms(shape, "plain", args.repeats)))
            print(f"  {phase} {shape.describe()} {shape.x_shape}: done", file=sys.stderr)
    rows.sort(key=lambda r: (r[0], -r[2] * r[3][1]))
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
