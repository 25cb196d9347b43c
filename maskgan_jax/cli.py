"""What every command line of the package shares: the console-script wrapper that turns a user error
into `<prog>: error: <message>` and exit status 2 (argparse's convention), and the runtime flags.

    def main(argv=None) -> int: ...                    # raises FileNotFoundError / ValueError on bad input
    def run() -> None: cli.run("maskgan-edit", main)   # the console script

A user error is a FileNotFoundError or a ValueError (maskgan_jax.inputs.InputError is one); anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

USER_ERRORS = (FileNotFoundError, NotADirectoryError, FileExistsError, ValueError)
USAGE_EXIT_CODE = 2
DEFAULT_CACHE_DIR = "~/.cache/maskgan_jax/jax_cache"


def run(prog: str, main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> NoReturn:
    """Runs `main(argv)` and exits with its status; a user error exits 2 after one line on stderr."""
    try:
        status = main(argv)
    except USER_ERRORS as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        sys.exit(USAGE_EXIT_CODE)
    sys.exit(status)


def add_runtime_flags(parser: argparse.ArgumentParser, batch_size: int, what: str = "inputs") -> None:
    """--batch_size, --compute_dtype and --jax_cache_dir, as every inference command takes them."""
    parser.add_argument("--batch_size", type=int, default=batch_size, help=f"{what} per compiled call")
    parser.add_argument("--compute_dtype", choices=("float32", "bfloat16"), default="float32",
                        help="the networks' compute dtype (parameters stay float32)")
    parser.add_argument("--jax_cache_dir", default=DEFAULT_CACHE_DIR,
                        help="persistent compilation cache: a second run skips compiling ('' turns it off)")


def check_runtime_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """parser.error (exit 2) on a --batch_size below 1."""
    if args.batch_size < 1:
        parser.error(f"--batch_size must be >= 1, got {args.batch_size}")
