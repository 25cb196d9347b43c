"""The step benchmark runs the training's own steps and reports a row per stage (no timing asserted)."""

import re

from maskgan_jax.benchmarks import common, step_speed


def test_prints_a_row_per_stage_with_flops(capsys):
    assert step_speed.main(["--variants=smoke", "--phases=maskvae,ebst", "--repeats=1", "--matmul_size=256"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| smoke |")]
    assert [row.split(" | ")[4] for row in rows] == ["maskvae", "ebst stage 1", "ebst stage 2"]
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        seconds, gflop_per_image, fraction = float(cells[5]), float(cells[7]), float(cells[9])
        assert seconds > 0 and gflop_per_image > 0 and 0 < fraction < 5, row
    assert re.search(r"fp32 matmul: \d+ GFLOP/s", out)


def test_bad_names_are_refused(capsys):
    for flag in ("--variants=huge", "--phases=parser2", "--dtypes=float16"):
        try:
            step_speed.parse_args([flag])
        except SystemExit as exit_:
            assert exit_.code == 2
        else:
            raise AssertionError(f"{flag} was accepted")
    assert "unknown" in capsys.readouterr().err


def test_accelerator_peaks_are_looked_up_by_device_kind():
    class Device:
        device_kind = "NVIDIA H100 80GB HBM3"
    assert common.accelerator_peak_gflops(Device(), "bfloat16") == 989e3
    Device.device_kind = "TPU v4"
    assert common.accelerator_peak_gflops(Device(), "float32") is None
    Device.device_kind = "cpu"
    assert common.accelerator_peak_gflops(Device(), "bfloat16") is None


def test_set_overrides_name_config_fields():
    args = step_speed.parse_args(["--variants=smoke", "--matmul_size=64", "--set",
                                  "model.generator.nonexistent_width=3"])
    try:
        step_speed.run(args)
    except KeyError as error:
        assert "model.generator.nonexistent_width" in str(error)
    else:
        raise AssertionError("an override of a field that does not exist was accepted")
