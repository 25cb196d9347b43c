"""`maskgan-paint`: the interactive editor in the browser (one page, a JSON/PNG API, sessions in memory).

    maskgan-paint --checkpoint=workdir/quickstart [--parser=workdir/quickstart] [--host=127.0.0.1] [--port=8000]
    python -m maskgan_jax.paint ...

The generator is compiled (or read from the persistent compilation cache) before the server listens,
so the first stroke is as fast as the others. It binds 127.0.0.1 unless --host says otherwise; on a
remote GPU machine, open it through an SSH port forward: `ssh -L 8000:127.0.0.1:8000 HOST`, then
http://127.0.0.1:8000 on your own machine.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    from maskgan_jax import cli
    from maskgan_jax.paint import server

    parser = argparse.ArgumentParser(prog="maskgan-paint", description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True, help="a workdir, phase or step directory, or an export")
    parser.add_argument("--parser", default=None, help="a checkpoint with a face parser: uploads need no mask")
    parser.add_argument("--phase", default=None, help="with a workdir: ebst or dmn (default: the newest)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 exposes it to the network)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--gallery", type=int, default=8, help="synthetic faces offered to start from")
    parser.add_argument("--tfds", default=None, help="offer a built TFDS dataset's faces instead (e.g. "
                        "celebamask_hq/official_64), with --split and --data_dir")
    parser.add_argument("--split", default="test")
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--max_upload_mb", type=float, default=server.DEFAULT_MAX_UPLOAD_BYTES / 2**20,
                        help="largest file accepted")
    parser.add_argument("--max_pixels", type=int, default=server.DEFAULT_MAX_PIXELS,
                        help="largest photo accepted, in pixels")
    parser.add_argument("--compute_dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--jax_cache_dir", default=cli.DEFAULT_CACHE_DIR,
                        help="persistent compilation cache: a restart skips compiling ('' turns it off)")
    return parser


def make_app(args: argparse.Namespace):
    """Loads the checkpoint, compiles the generator on a gallery face, returns (app, seconds to compile)."""
    import time

    from maskgan_jax import api, runtime
    from maskgan_jax.paint import faces, server

    runtime.setup()
    runtime.enable_compilation_cache(args.jax_cache_dir)
    editor = api.load_editor(args.checkpoint, parser=args.parser, phase=args.phase, batch_size=1,
                             compute_dtype=args.compute_dtype)
    if args.tfds:
        gallery = faces.tfds_faces(args.tfds, args.split, args.gallery, args.data_dir)
    else:
        gallery = faces.synthetic_faces(args.gallery, editor.resolution)
    paint = server.PaintApp(editor, gallery, max_upload_bytes=int(args.max_upload_mb * 2**20),
                            max_pixels=args.max_pixels)
    started = time.perf_counter()
    paint.open({"gallery": 0})  # compiles encode and render (or reads them from the cache)
    paint.sessions.clear()
    return server.create_app(paint), time.perf_counter() - started


def main(argv: Sequence[str] | None = None) -> int:
    import uvicorn

    args = build_parser().parse_args(argv)
    app, seconds = make_app(args)
    print(f"maskgan-paint: generator ready in {seconds:.1f} s; open http://{args.host}:{args.port}", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def run() -> None:
    from maskgan_jax import cli

    cli.run("maskgan-paint", main)
