"""One grammar for every command (issue 17): ``--config FILE``, ``key=value`` overrides of the same
validated keys, the same flag names everywhere, help that lists the keys, Ctrl-C as one line."""

import argparse
import re

import pytest
import yaml

from test_cli_errors import _checkpoint
from vitaccel.cli import COMMANDS, build_parser, main
from vitaccel.commands._shared import MARKER, claim_out
from vitaccel.commands.report import ReportConfig
from vitaccel.configtools import config_from_args
from vitaccel.errors import ConfigError

SHARED = {"--device": "device", "--batch-size": "batch_size", "--out": "out", "--seed": "seed", "--json": "json"}


def _parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def _sub(name: str) -> argparse.ArgumentParser:
    return next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices[name]


def test_top_level_help_is_an_overview_of_commands_and_grammar(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "vitaccel COMMAND [--config FILE|NAME] [key=value ...]" in text
    assert all(re.search(rf"^\s+{name}\s+\S", text, re.M) for name in COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_each_command_help_lists_its_keys_with_defaults(name):
    text = _sub(name).format_help()
    assert "config keys" in text and "--config" in text and "key=value" in text
    assert re.search(r"^  device=auto\s+auto: ", text, re.M)  # every command has the device key


@pytest.mark.parametrize("name", COMMANDS)
def test_shared_flags_set_the_key_of_the_same_name(name):
    flags = {f.name: f.key for f in _parse(name).config_flags}
    for flag, key in SHARED.items():
        if flag in flags:
            assert flags[flag] == ("out_dir" if (name, flag) == ("train", "--out") else key)


def test_flag_override_and_yaml_set_the_same_validated_key(tmp_path):
    forms = [["--values", "0.9,0.7"], ["values=0.9,0.7"], ["values=[0.9, 0.7]"]]
    configs = [config_from_args(ReportConfig, _parse("report", "--checkpoint", "c.pt", *f)) for f in forms]
    assert all(c.values == [0.9, 0.7] for c in configs)
    file = tmp_path / "report.yaml"
    file.write_text(yaml.safe_dump({"checkpoint": "c.pt", "values": [0.5], "max_images": 7}))
    cfg = config_from_args(ReportConfig, _parse("report", "--config", str(file), "--max-images", "9", "rule=topk"))
    assert (cfg.values, cfg.max_images, cfg.rule) == ([0.5], 9, "topk")
    with pytest.raises(ConfigError, match=r"^--max-images: value 0 is not allowed"):
        config_from_args(ReportConfig, _parse("report", "--checkpoint", "c.pt", "--max-images", "0"))
    with pytest.raises(ConfigError, match=r"^max_images: value 0 is not allowed"):
        config_from_args(ReportConfig, _parse("report", "--checkpoint", "c.pt", "max_images=0"))


def test_ctrl_c_is_one_line_and_status_130(monkeypatch, capsys):
    def interrupted(args: argparse.Namespace) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr("vitaccel.commands.eval.run", interrupted)
    assert main(["eval", "--checkpoint", "x.pt"]) == 130
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("vitaccel eval: interrupted")


def test_an_output_folder_is_rewritten_by_its_own_command_only_unless_forced(tmp_path):
    out = claim_out(tmp_path / "r", "report", force=False)
    (out / "report.md").write_text("old")
    assert claim_out(out, "report", force=False) == out            # the same command may rewrite it
    with pytest.raises(ConfigError, match="holds the output of vitaccel report; .* --force"):
        claim_out(out, "demo", force=False)
    claim_out(out, "demo", force=True)
    assert (out / MARKER).read_text() == "demo\n"


def test_emulate_runs_a_checkpoint_at_its_trained_density_or_as_told(tmp_path, capsys):
    ckpt = str(_checkpoint(tmp_path / "s.pt"))
    base = ["emulate", "--checkpoint", ckpt, "--accelerator", "fp32", "--batches", "1", "--batch-size", "4"]
    for extra, expected in (([], "topk=0.5"), (["--dense"], "dense"), (["--value", "0.25"], "topk=0.25"),
                            (["rule=mass", "value=0.8"], "mass=0.8")):
        assert main(base + extra) == 0
        assert f"s.pt: {expected} (pruning after block 1)" in capsys.readouterr().out
