"""The step benchmark runs the training's own steps and reports a row per stage (no timing asserted)."""

import re

import jax

from maskgan_jax.benchmarks import common, step_speed


def _cells(row):
    return [c.strip() for c in row.strip("|").split("|")]


def test_prints_a_row_per_stage_with_flops_and_the_budget(capsys):
    assert step_speed.main(["--variants=smoke", "--phases=maskvae,ebst", "--repeats=1", "--matmul_size=256"]) == 0
    out = capsys.readouterr().out
    steps_table, budget_table = out.split("Training budget")
    rows = [line for line in steps_table.splitlines() if line.startswith("| smoke |")]
    assert [row.split(" | ")[4] for row in rows] == ["maskvae", "ebst stage 1", "ebst stage 2"]
    # The smoke config's own global batch (8) by default, over however many devices the suite has.
    assert [int(_cells(row)[3]) * jax.device_count() for row in rows] == [8] * 3
    budget = [_cells(line) for line in budget_table.splitlines() if line.startswith("| smoke |")]
    # The config's steps (smoke: MaskVAE 40, EBST 4) times the step: EBST's two stages make one step.
    assert [(b[3], b[4]) for b in budget] == [("maskvae", "40"), ("ebst", "4"), ("**all**", "")]
    assert float(budget[0][5]) == float(_cells(rows[0])[5])
    assert abs(float(budget[1][5]) - float(_cells(rows[1])[5]) - float(_cells(rows[2])[5])) < 2e-3
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


def test_budget_projects_each_phase_at_fractions_of_the_matmul_rate():
    def row(stage, phase, seconds, gflop, steps=100):
        return step_speed.Row("quickstart", 64, "float32", 8, stage, seconds, gflop, 8, None, phase, steps)

    class Device:
        device_kind, platform = "cpu", "cpu"

    rows = [row("dmn", "dmn", 0.3, 12.0), row("ebst stage 1", "ebst", 0.3, 12.0, 10),
            row("ebst stage 2", "ebst", 0.6, 24.0, 10), row("dmn", "dmn", 9.9, 1.0, None)]
    table = step_speed.format_budget(rows, matmul_rate=100.0, device=Device())
    lines = [_cells(line) for line in table.splitlines()[2:]]
    # dmn: 100 steps x 0.3 s = 0.5 min; 1.2 TFLOP at 50 GFLOP/s = 0.4 min, at 100 GFLOP/s 0.2 min.
    assert lines[0][3:] == ["dmn", "100", "0.300", "12.00", "1.2", "0.5", "0.4", "0.2"]
    assert lines[1][3:] == ["ebst", "10", "0.900", "36.00", "0.4", "0.1", "0.1", "0.1"]
    assert lines[2][3:] == ["**all**", "", "", "", "1.6", "**0.7**", "**0.5**", "**0.3**"]
    assert step_speed.format_budget(rows[3:], 100.0, Device()) == ""  # no row at the config's own shape
