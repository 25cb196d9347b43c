"""Times the Dense Mapping Network (reference sizes) forward and forward+backward, and prints a
Markdown table with seconds, achieved GFLOP/s and that rate as a fraction of a large fp32 matmul
measured in the same run, next to a PyTorch baseline.

    python -m maskgan_jax.benchmarks.dmn_speed [--sizes 256 512] [--repeats 5] [--variants fast,plain,stock]
                                               [--backend cpu] [--matmul-size 2048] [--dtype float32]

- forward: the generator's output for batch 1; forward+backward: the gradient of a scalar L1 loss
  with respect to all parameters, as a training step computes it.
- seconds: median of --repeats timed calls after --warmup untimed calls (the first one compiles).
  Every timed round also times the matmul once, so the two rates see the same machine load.
- GFLOP: XLA's cost analysis of the compiled function (`compiled.cost_analysis()["flops"]`); the
  PyTorch rows use the FLOPs of the first JAX variant timed (the forms differ by <1% in FLOPs).
- variants (`maskgan_jax.ops.layer_forms`): "fast" (default, the shipped forms),
  "plain" (lax convs and reductions with JAX autodiff, transposed conv by output phases) and
  "stock" (plain, with the transposed conv as XLA's lhs-dilated conv, as flax nn.ConvTranspose
  runs it). stock and plain are slow on XLA:CPU: at 512 each fwd+bwd call can take a minute.
- PyTorch: if `torch` imports (the `maskgan_jax[torch]` extra), a PyTorch replica of the reference
  generator defined here (same layers, shapes and parameter count) is timed the same way with
  --torch-threads threads (forward under torch.no_grad()). Otherwise the baseline recorded for
  the issue is printed, marked as not measured in this run.

It runs in the environment every entry point gets from `runtime.setup()` (no allocator settings of
its own: GLIBC_TUNABLES huge pages and no mmap/trim gave no measurable gain, README "Running at
scale"); the table's header prints XLA_FLAGS and any GLIBC_TUNABLES the user set.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from maskgan_jax import runtime
from maskgan_jax.benchmarks.common import cost_gflop, matmul_function, time_once
from maskgan_jax.models import one_hot_mask, registry
from maskgan_jax.ops import LAYER_FORMS, layer_forms
from tfds_celebamask.labels import NUM_CLASSES

# The baseline: the public PyTorch generator on the 2-core development machine, 2 threads,
# seconds (forward, forward+backward) by image size.
RECORDED_TORCH_SECONDS = {256: (0.60, 1.62), 512: (2.29, 7.13)}

PASSES = ("fwd", "fwd+bwd")


@dataclasses.dataclass
class Timing:
    """One table row: an implementation timed at one image size for one pass."""

    implementation: str
    size: int
    pass_name: str
    seconds: float | None  # median; None where not run
    gflop: float | None
    note: str = ""

    def rate(self) -> float | None:
        """Achieved GFLOP/s, or None when seconds or FLOPs are unknown."""
        if self.seconds is None or self.gflop is None:
            return None
        return self.gflop / self.seconds


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m maskgan_jax.benchmarks.dmn_speed",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512], help="square image sizes")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per measurement (median)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls after compiling")
    parser.add_argument("--variants", default="fast",
                        help=f"comma-separated layer forms to time, from {','.join(LAYER_FORMS)}")
    parser.add_argument("--passes", default=",".join(PASSES), help="comma-separated, from fwd,fwd+bwd")
    parser.add_argument("--backend", default=None, help="JAX backend (cpu, gpu, tpu); default: jax.devices()[0]")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                        help="compute dtype of the network (parameters stay float32)")
    parser.add_argument("--matmul-size", type=int, default=2048, help="side of the fp32 reference matmul")
    parser.add_argument("--torch-threads", type=int, default=2, help="torch.set_num_threads for the baseline")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch baseline measurement")
    args = parser.parse_args(argv)
    args.variants = [v for v in args.variants.split(",") if v]
    args.passes = [p for p in args.passes.split(",") if p]
    for name, values, allowed in (("--variants", args.variants, LAYER_FORMS), ("--passes", args.passes, PASSES)):
        unknown = [v for v in values if v not in allowed]
        if unknown or not values:
            parser.error(f"{name}: got {values}, expected a comma-separated subset of {','.join(allowed)}")
    if args.repeats < 1 or args.warmup < 0 or any(s <= 0 or s % 32 for s in args.sizes):
        parser.error("--repeats must be >= 1, --warmup >= 0 and every size a positive multiple of 32 "
                     f"(got repeats={args.repeats}, warmup={args.warmup}, sizes={args.sizes})")
    return args


# ----------------------------------------------------------------------------------------------
# JAX side.


def _inputs(size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Random batch-1 inputs: image in [-1, 1], two label maps in [0, 19), an L1 target image."""
    rng = np.random.default_rng(seed)
    image = rng.uniform(-1, 1, (1, size, size, 3)).astype(np.float32)
    mask_t = rng.integers(0, 19, (1, size, size))
    mask_src = rng.integers(0, 19, (1, size, size))
    target = rng.uniform(-1, 1, (1, size, size, 3)).astype(np.float32)
    return image, mask_t, mask_src, target


def jax_step_functions(size: int, forms: str, dtype: Any, device: jax.Device
                       ) -> dict[str, tuple[Callable[[], Any], float]]:
    """Compiled DMN forward and forward+backward at `size` in the given layer forms.

    Returns:
      pass name -> (zero-argument callable returning device arrays, GFLOP from XLA's cost analysis).
    """
    # The class defaults are the reference sizes (the paper config's generator block).
    module = registry.build({"name": "dense_mapping_network"}, num_classes=NUM_CLASSES, dtype=jnp.dtype(dtype).name)
    image, mask_t, mask_src, target = _inputs(size)
    image, target = jax.device_put(image, device), jax.device_put(target, device)
    mask_t = jax.device_put(one_hot_mask(jnp.asarray(mask_t)), device)
    mask_src = jax.device_put(one_hot_mask(jnp.asarray(mask_src)), device)
    # The inputs are committed to `device`, so init and the steps run there.
    params = jax.jit(module.init)(jax.random.key(0), image, mask_t, mask_src)["params"]

    # The forms are read at trace time, and jit caches traces per Python function: build fresh
    # functions inside the context.
    with layer_forms(forms):
        def forward(p, img, m_t, m_src):
            return module.apply({"params": p}, img, m_t, m_src)

        def loss(p, img, m_t, m_src, tgt):
            out = module.apply({"params": p}, img, m_t, m_src).astype(jnp.float32)
            return jnp.mean(jnp.abs(out - tgt))

        compiled = {
            "fwd": (jax.jit(forward).lower(params, image, mask_t, mask_src).compile(),
                    (params, image, mask_t, mask_src)),
            "fwd+bwd": (jax.jit(jax.grad(loss)).lower(params, image, mask_t, mask_src, target).compile(),
                        (params, image, mask_t, mask_src, target)),
        }
    out = {}
    for name, (fn, args) in compiled.items():
        out[name] = (lambda fn=fn, args=args: fn(*args), cost_gflop(fn))
    return out


# ----------------------------------------------------------------------------------------------
# PyTorch replica of the reference generator (timing only; default PyTorch initialisation).


def torch_generator(num_classes: int = 19, ngf: int = 64, n_downsample: int = 4, n_blocks: int = 4,
                    widths: tuple[int, int, int] = (16, 32, 64), n_deep: int = 3):
    """The public MaskGAN generator's compute structure in PyTorch (NCHW), as the design doc describes
    it: pix2pixHD backbone with ConvTranspose2d up-sampling, AdaIN residual blocks fed by a style
    encoder with two SFT layers conditioned on a label encoder. Same layers and parameter count as
    DenseMappingNetwork (89,702,595 at the defaults). Returns a torch.nn.Module called as
    module(image_t, mask_t_onehot, mask_src_onehot)."""
    import torch
    from torch import nn
    import torch.nn.functional as F

    def reflect_conv(cin: int, cout: int, k: int, stride: int, pad: int) -> nn.Sequential:
        return nn.Sequential(nn.ReflectionPad2d(pad), nn.Conv2d(cin, cout, k, stride))

    class SFT(nn.Module):
        def __init__(self, c: int):
            super().__init__()
            self.scale1, self.scale2 = nn.Conv2d(c, c, 1), nn.Conv2d(c, c, 1)
            self.shift1, self.shift2 = nn.Conv2d(c, c, 1), nn.Conv2d(c, c, 1)

        def forward(self, features, condition):
            scale = self.scale2(F.leaky_relu(self.scale1(condition), 0.1))
            shift = self.shift2(F.leaky_relu(self.shift1(condition), 0.1))
            return features * scale + shift

    class LabelEncoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Sequential(reflect_conv(num_classes, widths[0], 7, 1, 3), nn.ReLU(),
                                      reflect_conv(widths[0], widths[1], 4, 2, 1), nn.ReLU(),
                                      reflect_conv(widths[1], widths[2], 4, 2, 1))
            deep = []
            for _ in range(n_deep):
                deep += [nn.ReLU(), reflect_conv(widths[2], widths[2], 4, 2, 1)]
            self.deep = nn.Sequential(*deep)

        def forward(self, mask):
            fea1 = self.head(mask)
            return fea1, self.deep(fea1)

    class StyleEncoder(nn.Module):
        def __init__(self, out_dim: int):
            super().__init__()
            self.head = nn.Sequential(reflect_conv(3, widths[0], 7, 1, 3), nn.ReLU(),
                                      reflect_conv(widths[0], widths[1], 4, 2, 1), nn.ReLU(),
                                      reflect_conv(widths[1], widths[2], 4, 2, 1), nn.ReLU())
            self.middle = nn.Sequential(*[m for _ in range(n_deep)
                                          for m in (reflect_conv(widths[2], widths[2], 4, 2, 1), nn.ReLU())])
            self.sft1, self.sft2 = SFT(widths[2]), SFT(widths[2])
            self.last = nn.Conv2d(widths[2], out_dim, 1)

        def forward(self, image, fea1, fea2):
            x = self.sft1(self.head(image), fea1)
            x = self.sft2(self.middle(x), fea2)
            return self.last(F.adaptive_avg_pool2d(x, 1)).flatten(1)

    class AdaINBlock(nn.Module):
        def __init__(self, c: int):
            super().__init__()
            self.conv0, self.conv1 = reflect_conv(c, c, 3, 1, 1), reflect_conv(c, c, 3, 1, 1)

        @staticmethod
        def adain(x, scale, bias):
            return F.instance_norm(x, eps=1e-5) * scale[:, :, None, None] + bias[:, :, None, None]

        def forward(self, x, params):
            (scale0, bias0), (scale1, bias1) = params
            y = F.relu(self.adain(self.conv0(x), scale0, bias0))
            return x + self.adain(self.conv1(y), scale1, bias1)

    class Generator(nn.Module):
        def __init__(self):
            super().__init__()
            channels = ngf * 2 ** n_downsample
            self.channels = channels
            self.enc_label, self.enc_style = LabelEncoder(), StyleEncoder(n_blocks * 4 * channels)
            down = [reflect_conv(num_classes, ngf, 7, 1, 3), nn.InstanceNorm2d(ngf), nn.ReLU()]
            for i in range(n_downsample):
                cin = ngf * 2 ** i
                down += [nn.Conv2d(cin, 2 * cin, 3, 2, 1), nn.InstanceNorm2d(2 * cin), nn.ReLU()]
            self.down = nn.Sequential(*down)
            self.blocks = nn.ModuleList([AdaINBlock(channels) for _ in range(n_blocks)])
            up = []
            for i in range(n_downsample):
                cin = ngf * 2 ** (n_downsample - i)
                up += [nn.ConvTranspose2d(cin, cin // 2, 3, 2, 1, output_padding=1), nn.InstanceNorm2d(cin // 2),
                       nn.ReLU()]
            up += [reflect_conv(ngf, 3, 7, 1, 3), nn.Tanh()]
            self.up = nn.Sequential(*up)

        def forward(self, image_t, mask_t, mask_src):
            fea1, fea2 = self.enc_label(mask_t)
            style = self.enc_style(image_t, fea1, fea2)
            c = self.channels
            # Reference layout: AdaIN layer k reads bias [2Ck, 2Ck + C) and scale [2Ck + C, 2C(k + 1)).
            pairs = [(style[:, 2 * c * k + c:2 * c * (k + 1)], style[:, 2 * c * k:2 * c * k + c])
                     for k in range(2 * n_blocks)]
            x = self.down(mask_src)
            for b, block in enumerate(self.blocks):
                x = block(x, pairs[2 * b:2 * b + 2])
            return self.up(x)

    torch.manual_seed(0)
    return Generator()


def torch_timings(sizes: Sequence[int], passes: Sequence[str], repeats: int, warmup: int, threads: int,
                  gflop: dict[tuple[int, str], float | None]) -> tuple[list[Timing], str]:
    """Times the PyTorch replica on CPU. Returns the rows and a description line."""
    import torch

    torch.set_num_threads(threads)
    model = torch_generator()
    param_count = sum(p.numel() for p in model.parameters())
    rows = []
    for size in sizes:
        image, mask_t, mask_src, target = _inputs(size)
        to_nchw = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))
        eye = np.eye(19, dtype=np.float32)
        inputs = (to_nchw(image), to_nchw(eye[mask_t]), to_nchw(eye[mask_src]))
        target_t = to_nchw(target)

        def forward(inputs=inputs):
            with torch.no_grad():
                return model(*inputs)

        def forward_backward(inputs=inputs, target_t=target_t):
            model.zero_grad(set_to_none=True)
            loss = (model(*inputs) - target_t).abs().mean()
            loss.backward()
            return loss

        for pass_name, fn in (("fwd", forward), ("fwd+bwd", forward_backward)):
            if pass_name not in passes:
                continue
            for _ in range(max(warmup, 1)):
                fn()
            seconds = []
            for _ in range(repeats):
                start = time.perf_counter()
                fn()
                seconds.append(time.perf_counter() - start)
            rows.append(Timing("PyTorch replica (measured)", size, pass_name, statistics.median(seconds),
                               gflop.get((size, pass_name))))
    return rows, f"PyTorch {torch.__version__}, {threads} threads, replica with {param_count:,} parameters"


def recorded_torch_rows(sizes: Sequence[int], passes: Sequence[str],
                        gflop: dict[tuple[int, str], float | None]) -> list[Timing]:
    rows = []
    for size in sizes:
        if size not in RECORDED_TORCH_SECONDS:
            continue
        for pass_name, seconds in zip(PASSES, RECORDED_TORCH_SECONDS[size]):
            if pass_name in passes:
                rows.append(Timing("public PyTorch generator, 2 threads (recorded, not measured in this run)",
                                   size, pass_name, seconds, gflop.get((size, pass_name))))
    return rows


# ----------------------------------------------------------------------------------------------
# Report.


def format_table(rows: Sequence[Timing], matmul_gflops: float, repeats: int) -> str:
    """Markdown table: one line per (implementation, size, pass)."""
    lines = [f"| implementation | size | pass | seconds (median of {repeats}) | GFLOP | GFLOP/s | fraction of matmul |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        rate = row.rate()
        cells = [row.implementation + (f" ({row.note})" if row.note else ""), f"{row.size}x{row.size}",
                 row.pass_name,
                 "n/a" if row.seconds is None else f"{row.seconds:.3f}",
                 "n/a" if row.gflop is None else f"{row.gflop:.1f}",
                 "n/a" if rate is None else f"{rate:.0f}",
                 "n/a" if rate is None else f"{rate / matmul_gflops:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    runtime.setup()
    device = jax.devices(args.backend)[0] if args.backend else jax.devices()[0]
    dtype = jnp.bfloat16 if args.dtype == "bfloat16" else jnp.float32
    matmul, matmul_gflop = matmul_function(args.matmul_size, device)
    time_once(matmul)
    matmul_seconds: list[float] = []
    rows: list[Timing] = []
    reference_gflop: dict[tuple[int, str], float | None] = {}  # for the PyTorch rows
    for size in args.sizes:
        functions = {forms: jax_step_functions(size, forms, dtype, device) for forms in args.variants}
        reference_gflop.update({(size, p): g for p, (_, g) in functions[args.variants[0]].items()})
        samples = {(forms, p): [] for forms in args.variants for p in args.passes}
        for (forms, p) in samples:
            for _ in range(args.warmup):
                time_once(functions[forms][p][0])
        for _ in range(args.repeats):
            matmul_seconds.append(time_once(matmul))
            for (forms, p), seconds in samples.items():
                seconds.append(time_once(functions[forms][p][0]))
        for (forms, p), seconds in samples.items():
            rows.append(Timing(f"JAX {forms} forms", size, p, statistics.median(seconds), functions[forms][p][1]))
        del functions
    matmul_gflops = matmul_gflop / statistics.median(matmul_seconds)

    torch_line = ""
    if not args.no_torch:
        try:
            import torch  # noqa: F401  (only whether it is installed)
        except ImportError:
            torch_line = "PyTorch is not installed (pip install 'maskgan_jax[torch]'): baseline as recorded."
        else:
            torch_rows, torch_line = torch_timings(args.sizes, args.passes, args.repeats, args.warmup,
                                                   args.torch_threads, reference_gflop)
            rows += torch_rows
    if not any(r.implementation.startswith("PyTorch replica") for r in rows):
        rows += recorded_torch_rows(args.sizes, args.passes, reference_gflop)
    rows.sort(key=lambda r: (r.size, PASSES.index(r.pass_name)))

    print(f"DenseMappingNetwork (reference sizes, batch 1, {args.dtype}) on {device.platform}: {device.device_kind}; "
          f"jax {jax.__version__}")
    print(f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}; GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '')!r}")
    print(f"{args.matmul_size}^2 fp32 matmul: {matmul_gflops:.0f} GFLOP/s (median of {len(matmul_seconds)}, "
          "interleaved with the network timings)")
    if torch_line:
        print(torch_line)
    print()
    print(format_table(rows, matmul_gflops, args.repeats))


if __name__ == "__main__":
    main()
