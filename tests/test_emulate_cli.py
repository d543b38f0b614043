"""``vitaccel emulate``: model and data in, report out; bad input is one clear line, exit status 2."""

import json
import sys

import torch

import vitaccel.models
from vitaccel.cli import main


def test_emulate_a_timm_model_on_digits(tmp_path, capsys):
    out = tmp_path / "report.json"
    rc = main(["emulate", "--model", "vit_pico_patch4_32", "--accelerator", "fp13", "--fast",
               "--data", "digits", "--batches", "2", "--batch-size", "8", "--json", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "blocks.1.attn.sdpa0.av" in text and "top-1 accuracy" in text
    data = json.loads(out.read_text())
    assert data["accelerator"] == "fp13" and data["forwards"] == 2 and 0 <= data["accuracy"] <= 1


def test_emulate_a_checkpoint_on_random_inputs(tmp_path, capsys):
    from vitaccel.configtools import to_dict
    from vitaccel.data import DataConfig
    from vitaccel.train import TrainConfig
    from vitaccel.train.build import model_args
    from vitaccel.train.checkpoint import save_atomic
    model = vitaccel.models.create_model("vit_pico_patch4_32", num_classes=6)
    path = tmp_path / "ckpt.pt"
    cfg = TrainConfig(model="vit_pico_patch4_32", data=DataConfig(name="synthetic", img_size=32))
    save_atomic({"model_args": model_args(cfg, 6), "model": model.state_dict(), "config": to_dict(cfg),
                 "classes": list("abcdef")}, path)
    rc = main(["emulate", "--checkpoint", str(path), "--accelerator", "fp32", "--data", "random",
               "--batches", "1", "--batch-size", "2"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "SQNR inf dB" in text and "top-1" not in text


def test_integer_accelerator_is_calibrated_first(capsys):
    rc = main(["emulate", "--model", "vit_pico_patch4_32", "--accelerator", "int8-lot4", "--fast",
               "--data", "digits", "--batches", "1", "--batch-size", "4", "--calib-batches", "1",
               "--calib-method", "percentile"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "accelerator int8-lot4" in out and "blocks.0.mlp.fc1" in out


def test_bad_accelerator_file_is_a_one_line_error(tmp_path, capsys):
    bad = tmp_path / "acc.yaml"
    bad.write_text("datapath: analog\n")
    assert main(["emulate", "--model", "vit_pico_patch4_32", "--accelerator", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "datapath: value 'analog' is not allowed" in err and "Traceback" not in err


def test_unknown_model_and_bad_numbers_are_errors(capsys):
    assert main(["emulate", "--model", "vit_nope_42", "--accelerator", "fp13"]) == 2
    assert "'vit_nope_42' is not a timm model name" in capsys.readouterr().err
    assert main(["emulate", "--model", "vit_pico_patch4_32", "--accelerator", "fp13", "--batches", "0"]) == 2
    assert "--batches: value 0 is not allowed" in capsys.readouterr().err
    assert main(["emulate", "--model", "vit_pico_patch4_32", "--accelerator", "fp13", "--data", "/no/such"]) == 2
    assert "--data: '/no/such'" in capsys.readouterr().err


def test_progress_bar_goes_to_stderr_on_a_terminal_only(capsys, monkeypatch):
    argv = ["emulate", "--model", "vit_pico_patch4_32", "--accelerator", "fp32", "--data", "random",
            "--batches", "2", "--batch-size", "2"]
    main(argv)
    assert "emulate fp32" not in capsys.readouterr().err  # a log (not a terminal): no bar
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    main(argv)
    assert "emulate fp32" in capsys.readouterr().err
    assert torch.is_grad_enabled()  # the command does not leave global state changed


def test_calibration_options_and_linear_only(capsys):
    rc = main(["emulate", "--model", "vit_pico_patch4_32", "--accelerator", "int8", "--fast", "--data", "digits",
               "--batches", "1", "--batch-size", "4", "--calib-batches", "1", "--calib-method", "mse",
               "--smooth", "0.5", "--ops", "linear"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "a per-tensor mse, w per-channel, smooth 0.5" in out
    assert "op kind 'attention' not in ops" in out
    assert main(["emulate", "--model", "vit_pico_patch4_32", "--accelerator", "int8", "--data", "digits",
                 "--batches", "1", "--smooth", "1.5"]) == 2
    assert "--smooth: value 1.5 is not allowed; a SmoothQuant alpha in [0, 1]" in capsys.readouterr().err
    assert main(["emulate", "--model", "vit_pico_patch4_32", "--accelerator", "int8", "--data", "digits",
                 "--batches", "1", "--ops", "linear,attn"]) == 2
    assert "--ops: value ['linear', 'attn'] is not allowed; unknown op kinds ['attn']" in capsys.readouterr().err


def test_emulate_and_report_share_the_calibration_keys():
    """One definition of calib_method, smooth and ops (same help, same checks) in both commands, and
    the CLI's spelling of the calibration methods is the emulator's."""
    import dataclasses

    from vitaccel.commands._shared import CALIB_METHODS
    from vitaccel.commands.emulate import EmulateConfig
    from vitaccel.commands.report import ReportConfig
    from vitaccel.emulate.calibration import METHODS

    assert CALIB_METHODS == METHODS
    fields = [{f.name: f for f in dataclasses.fields(c)} for c in (EmulateConfig, ReportConfig)]
    for key in ("calib_method", "smooth", "ops"):
        a, b = fields[0][key], fields[1][key]
        assert a.metadata["help"] == b.metadata["help"] and a.metadata["choices"] == b.metadata["choices"]
        assert a.metadata["check"] is b.metadata["check"]
