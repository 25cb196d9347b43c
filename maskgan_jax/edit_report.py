"""The editing benchmark's report: Markdown tables of its records, the examples figure, the output files.

Records and verdicts as maskgan_jax.edit_scores and maskgan_jax.edit_tiers make them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np

from maskgan_jax import edit_scores, mask_io, paths

JSON_FILE, MARKDOWN_FILE, EXAMPLES_FILE = "edit_benchmark.json", "edit_benchmark.md", "edit_benchmark_examples.png"


_TABLES = (  # (metric, region, format, title)
    (edit_scores.MASK_ACCURACY, "edited", ".3f", "mask following: parser pixel accuracy, edited region"),
    (edit_scores.MASK_IOU, "edited", ".3f", "mask following: parser mean IoU, edited region"),
    (edit_scores.MASK_ACCURACY, "all", ".3f", "mask following: parser pixel accuracy, image"),
    (edit_scores.MASK_IOU, "all", ".3f", "mask following: parser mean IoU, image"),
    (edit_scores.KID, "all", ".4f", "realism: KID against the truths"),
    (edit_scores.FID, "all", ".2f", "realism: FID against the truths, all kinds pooled"),
    (edit_scores.COLOUR_ERROR, "edited", ".2f", "colour: per-class mean-colour error (0-255), edited region"),
    (edit_scores.PSNR, "unedited", ".2f", "preservation: PSNR (dB), unedited pixels"),
    (edit_scores.SSIM, "unedited", ".4f", "preservation: SSIM (masked), unedited pixels"),
    (edit_scores.PSNR, "edited", ".2f", "fidelity: PSNR (dB), edited region"),
    (edit_scores.SSIM, "edited", ".4f", "fidelity: SSIM (masked: windows restricted to the region), edited region"),
    (edit_scores.PSNR, "all", ".2f", "image: PSNR (dB)"),
    (edit_scores.SSIM, "all", ".4f", "image: SSIM"),
)


def markdown_tables(records: Sequence[dict], header: str = "") -> str:
    """One table per (metric, region) with records: a row per method, a column per edit kind; cells
    'value [2.5%, 97.5%]'."""
    methods = list(dict.fromkeys(r["method"] for r in records))
    lookup = {(r["method"], r["edit"], r["region"], r["metric"]): r for r in records}
    lines = [header] if header else []
    for metric, region, fmt, title in _TABLES:
        edits = list(dict.fromkeys(r["edit"] for r in records if r["metric"] == metric and r["region"] == region))
        if not edits:
            continue
        better = "higher" if edit_scores.HIGHER_IS_BETTER[metric] else "lower"
        lines += [f"### {title} ({better} is better)", "", "| method | " + " | ".join(edits) + " |",
                  "|---|" + "---|" * len(edits)]
        for method in methods:
            cells = []
            for edit in edits:
                r = lookup.get((method, edit, region, metric))
                if r is None or r["value"] is None:
                    cells.append("-")
                else:
                    low, high = r["interval"] or (float("nan"), float("nan"))
                    cells.append(f"{r['value']:{fmt}} [{low:{fmt}}, {high:{fmt}}]")
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def examples_figure(examples: Sequence, results: dict[str, np.ndarray]) -> np.ndarray:
    """First example of each edit kind (evaluate.Example), one per row: target | target mask | wanted mask |
    truth | each method's result in `results` order (name -> uint8 (N, R, R, 3)); uint8 image."""
    rows = []
    for edit in dict.fromkeys(e.edit for e in examples):
        i = next(k for k, e in enumerate(examples) if e.edit == edit)
        e = examples[i]
        columns = [e.target_image, mask_io.colour_labels(e.target_labels), mask_io.colour_labels(e.wanted_labels),
                   e.true_image] + [images[i] for images in results.values()]
        rows.append(np.concatenate(columns, axis=1))
    return np.concatenate(rows, axis=0)


def write_outputs(out: str | os.PathLike, records: list[dict], verdicts: list[dict], examples: Sequence,
                  figure_rows: dict[str, np.ndarray], markdown: str) -> None:
    """Writes the JSON, the Markdown and the examples figure into `out`."""
    out = paths.as_path(out)  # local or remote (gs://)
    out.mkdir(parents=True, exist_ok=True)
    (out / JSON_FILE).write_text(json.dumps({"records": records, "verdicts": verdicts}, indent=1) + "\n")
    (out / MARKDOWN_FILE).write_text(markdown + "\n")
    mask_io.write_image(out / EXAMPLES_FILE, examples_figure(examples, figure_rows))
