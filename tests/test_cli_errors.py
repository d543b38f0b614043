"""Every command with every class of bad input: exit status 2, one line on stderr that names the
argument and what is allowed, and no file written or changed (issue 14, defect 13)."""

import os
import re
from pathlib import Path

import pytest
import torch

import vitaccel.models
from vitaccel.cli import main
from vitaccel.configtools import from_dict, to_dict
from vitaccel.train import TrainConfig
from vitaccel.train.build import model_args
from vitaccel.train.checkpoint import save_atomic

SMALL = {"model": "vit_pico_patch4_32", "data": {"name": "digits", "img_size": 16}, "out_dir": "unused",
         "prune": {"layer": 1, "rule": "topk", "value": 0.5}}


def _checkpoint(path: Path, config: dict | None = None, **changes) -> Path:
    """A valid format-2 checkpoint of an untrained 16 px pico ViT, with ``changes`` to its dict."""
    cfg = from_dict(TrainConfig, config or SMALL)
    torch.manual_seed(0)
    model = vitaccel.models.create_model(cfg.model, num_classes=10, img_size=16)
    state = {"model": model.state_dict(), "ema": None, "config": to_dict(cfg), "model_args": model_args(cfg, 10),
             "classes": [str(d) for d in range(10)], "epoch": 1, "history": []}
    state.update(changes)
    save_atomic(state, path)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("inputs")
    (root / "junk.pt").write_bytes(b"not a checkpoint")
    (root / "blocker").write_text("a file where a folder should be")
    (root / "foreign").mkdir()
    (root / "foreign" / "notes.txt").write_text("someone else's")
    (root / "reported").mkdir()
    (root / "reported" / ".vitaccel-output").write_text("report\n")
    (root / "reported" / "report.md").write_text("# a report")
    deep = {**SMALL, "prune": {"layer": 5, "rule": "topk", "value": 0.5}}
    return {"ckpt": str(_checkpoint(root / "good.pt")),
            "junk": str(root / "junk.pt"),
            "missing": str(root / "missing.pt"),
            "no_args": str(_checkpoint(root / "no_args.pt", model_args=None)),
            "bad_args": str(_checkpoint(root / "bad_args.pt", model_args={"name": "vit_pico_patch4_32",
                                                                          "kwargs": {"checkpoint_path": "/x"}})),
            "deep": str(_checkpoint(root / "deep.pt", config=deep)),
            "unwritable": str(root / "blocker" / "out"),
            "foreign": str(root / "foreign"),
            "reported": str(root / "reported"),
            "unwritable_file": str(root / "blocker" / "out" / "r.json")}


E = "eval"
R = "report"
M = "emulate"
T = "train"
D = "demo"
# case -> (argv with {placeholders} from ``files``, regex the one stderr line must match)
CASES = {
    "eval: missing checkpoint": ([E, "--checkpoint", "{missing}"], r"checkpoint '.*missing.pt' does not exist"),
    "eval: corrupt checkpoint": ([E, "--checkpoint", "{junk}"], r"checkpoint '.*junk.pt' is corrupt"),
    "eval: batch size 0": ([E, "--checkpoint", "{ckpt}", "--batch-size", "0"],
                           r"--batch-size: value 0 is not allowed; it must be >= 1"),
    "eval: batch size not a number": ([E, "--checkpoint", "{ckpt}", "--batch-size", "x"],
                                      r"--batch-size: value 'x' is not allowed; an integer is required"),
    "eval: not key=value": ([E, "--checkpoint", "{ckpt}", "dense"], r"override 'dense' is not of the form key=value"),
    "eval: data key without its section": ([E, "--checkpoint", "{ckpt}", "img_size=32"],
                                           r"img_size: unknown key; allowed keys are \['batch_size', 'checkpoint'"),
    "eval: unknown rule": ([E, "--checkpoint", "{ckpt}", "--rule", "top", "--value", "0.5"],
                           r"--rule: value 'top' is not allowed; choose one of \['topk', 'value', 'mass'\]"),
    "eval: value out of range": ([E, "--checkpoint", "{ckpt}", "--rule", "topk", "--value", "2"],
                                 r"--value: value 2.0 is not allowed; rule 'topk' needs 0 < value <= 1"),
    "eval: sweep values out of range for the trained rule": ([E, "--checkpoint", "{ckpt}", "--sweep", "--values",
                                                              "0.5,3"],
                                                             r"--values: value 3.0 is not allowed; rule 'topk' needs"),
    "eval: layer out of range": ([E, "--checkpoint", "{ckpt}", "--layer", "9"],
                                 r"--layer: value 9 is not allowed; .*use 1 <= layer <= 2"),
    "eval: checkpoint layer out of range": ([E, "--checkpoint", "{deep}"],
                                            r"^(?!.*--layer)vitaccel eval: error: checkpoint '.*deep.pt': "
                                            r"its pruning settings do not fit its model; "
                                            r"layer: value 5 is out of range"),
    "eval: wrong image size": ([E, "--checkpoint", "{ckpt}", "data.img_size=32"],
                               r"data override img_size=32: not allowed; the checkpoint's model takes 16 px"),
    "eval: unknown data key": ([E, "--checkpoint", "{ckpt}", "data.nmae=digits"], r"data.nmae: unknown key; allowed"),
    "eval: data that does not fit the model": ([E, "--checkpoint", "{ckpt}", "data.name=synthetic",
                                                "data.num_samples=40"],
                                               r"data: the data has 6 classes but the model predicts 10"),
    "eval: no model_args": ([E, "--checkpoint", "{no_args}"], r"'model_args' is missing"),
    "eval: malformed model_args": ([E, "--checkpoint", "{bad_args}"], r"'model_args' is missing or does not match"),
    "eval: unwritable sweep folder": ([E, "--checkpoint", "{ckpt}", "--sweep", "--out", "{unwritable}"],
                                      r"--out: folder '.*blocker/out' is not writable"),
    "eval: cuda without cuda": ([E, "--checkpoint", "{ckpt}", "--device", "cuda"],
                                r"--device: value 'cuda' is not allowed; no CUDA device is available"),
    "report: missing checkpoint": ([R, "--checkpoint", "{missing}", "--out", "{out}"],
                                   r"checkpoint '.*missing.pt' does not exist"),
    "report: densities not numbers": ([R, "--checkpoint", "{ckpt}", "--values", "abc", "--out", "{out}"],
                                      r"--values\[0\]: value 'abc' is not allowed; a number is required"),
    "report: density out of range": ([R, "--checkpoint", "{ckpt}", "--values", "0.9,1.5", "--out", "{out}"],
                                     r"--values: value 1.5 is not allowed; rule 'mass' needs 0 < value <= 1"),
    "report: unknown key": ([R, "--checkpoint", "{ckpt}", "densities=0.9", "--out", "{out}"],
                            r"densities: unknown key; allowed keys are \['accelerators'"),
    "report: data that does not fit the model": ([R, "--checkpoint", "{ckpt}", "data.name=synthetic",
                                                  "data.num_samples=40", "--out", "{out}"],
                                                 r"data: the data has 6 classes but the model predicts 10"),
    "report: out holds files of no vitaccel command": ([R, "--checkpoint", "{ckpt}", "--out", "{foreign}"],
                                                       r"--out: folder '.*foreign' holds files vitaccel did not "
                                                       r"write; choose another folder, or add --force"),
    "report: cuda without cuda": ([R, "--checkpoint", "{ckpt}", "--device", "cuda", "--out", "{out}"],
                                  r"--device: value 'cuda' is not allowed; no CUDA device is available"),
    "report: max images 0": ([R, "--checkpoint", "{ckpt}", "--max-images", "0", "--out", "{out}"],
                             r"--max-images: value 0 is not allowed; it must be >= 1"),
    "report: unknown accelerator": ([R, "--checkpoint", "{ckpt}", "--accelerators", "fp13,nope", "--out", "{out}"],
                                    r"--accelerators: accelerator preset 'nope' is unknown; choose one of"),
    "report: missing energy table": ([R, "--checkpoint", "{ckpt}", "--energy-table", "{missing}", "--out", "{out}"],
                                     r"--energy-table: config file '.*missing.pt' does not exist"),
    "report: unknown calibration method": ([R, "--checkpoint", "{ckpt}", "--calib-method", "minmax", "--out", "{out}"],
                                           r"--calib-method: value 'minmax' is not allowed; choose one of "
                                           r"\['max', 'percentile', 'mse'\]"),
    "report: smooth out of range": ([R, "--checkpoint", "{ckpt}", "--smooth", "1.5", "--out", "{out}"],
                                    r"--smooth: value 1.5 is not allowed; a SmoothQuant alpha in \[0, 1\]"),
    "report: smooth not a number": ([R, "--checkpoint", "{ckpt}", "smooth=half", "--out", "{out}"],
                                    r"smooth: value 'half' is not allowed"),
    "report: unknown op kind": ([R, "--checkpoint", "{ckpt}", "--ops", "linear,conv", "--out", "{out}"],
                                r"--ops: value \['linear', 'conv'\] is not allowed; unknown op kinds \['conv'\]; "
                                r"choose from \['linear', 'conv2d', 'matmul', 'attention'\]"),
    "report: unwritable out": ([R, "--checkpoint", "{ckpt}", "--out", "{unwritable}"],
                               r"--out: folder '.*blocker/out' is not writable"),
    "report: wrong image size": ([R, "--checkpoint", "{ckpt}", "data.img_size=32", "--out", "{out}"],
                                 r"data img_size=32: not allowed; the checkpoint's model takes 16 px"),
    "report: malformed model_args": ([R, "--checkpoint", "{bad_args}", "--out", "{out}"],
                                     r"'model_args' is missing or does not match"),
    "emulate: unknown accelerator": ([M, "--model", "vit_pico_patch4_32", "--accelerator", "nope"],
                                     r"--accelerator: accelerator preset 'nope' is unknown; choose one of"),
    "emulate: batches 0": ([M, "--model", "vit_pico_patch4_32", "--accelerator", "fp13", "--batches", "0"],
                           r"--batches: value 0 is not allowed; it must be >= 1"),
    "emulate: batch size 0": ([M, "--model", "vit_pico_patch4_32", "--accelerator", "fp13", "--batch-size", "0"],
                              r"--batch-size: value 0 is not allowed; it must be >= 1"),
    "emulate: density of a timm model": ([M, "--model", "vit_pico_patch4_32", "--accelerator", "fp13", "--dense"],
                                         r"--dense, --rule, --value: only with --checkpoint"),
    "emulate: density out of range": ([M, "--checkpoint", "{ckpt}", "--accelerator", "fp13", "--value", "2"],
                                      r"--value: value 2.0 is not allowed; rule 'topk' needs 0 < value <= 1"),
    "emulate: dense and a rule": ([M, "--checkpoint", "{ckpt}", "--accelerator", "fp13", "--dense", "--rule", "mass"],
                                  r"--dense: cannot be combined with --rule or --value"),
    "emulate: data that does not fit the checkpoint": ([M, "--checkpoint", "{ckpt}", "--accelerator", "fp13",
                                                        "--data", "synthetic"],
                                                       r"--data: the data has 6 classes but the model predicts 10"),
    "emulate: cuda without cuda": ([M, "--model", "vit_pico_patch4_32", "--accelerator", "fp13", "--device", "cuda"],
                                   r"--device: value 'cuda' is not allowed; no CUDA device is available"),
    "emulate: unknown model": ([M, "--model", "vit_nope_42", "--accelerator", "fp13"],
                               r"model: 'vit_nope_42' is not a timm model name"),
    "emulate: no pretrained weights": ([M, "--model", "vit_pico_patch4_32", "--accelerator", "fp13", "--pretrained"],
                                       r"--pretrained: model 'vit_pico_patch4_32' has no pretrained weights in timm"),
    "emulate: pretrained checkpoint": ([M, "--checkpoint", "{ckpt}", "--accelerator", "fp13", "--pretrained"],
                                       r"--pretrained: only with --model"),
    "emulate: wrong image size": ([M, "--checkpoint", "{ckpt}", "--accelerator", "fp13", "--img-size", "32"],
                                  r"--img-size: value 32 is not allowed; the checkpoint's model takes 16 px"),
    "emulate: missing checkpoint": ([M, "--checkpoint", "{missing}", "--accelerator", "fp13"],
                                    r"checkpoint '.*missing.pt' does not exist"),
    "emulate: no model_args": ([M, "--checkpoint", "{no_args}", "--accelerator", "fp13"], r"'model_args' is missing"),
    "emulate: unwritable json": ([M, "--model", "vit_pico_patch4_32", "--accelerator", "fp13",
                                  "--json", "{unwritable_file}"], r"--json: folder '.*blocker/out' is not writable"),
    "emulate: unknown data": ([M, "--model", "vit_pico_patch4_32", "--accelerator", "fp13", "--data", "/no/such"],
                              r"--data: '/no/such' is neither a data set name"),
    "emulate: model and checkpoint": ([M, "--model", "vit_pico_patch4_32", "--checkpoint", "{ckpt}",
                                       "--accelerator", "fp13"], r"give exactly one of --model NAME and --checkpoint"),
    "train: no config": ([T, "epochs=1"], r"--config: required; give a YAML recipe or a bundled name"),
    "train: batch size 0": ([T, "--config", "digits-teacher", "--batch-size", "0", "--out", "{out}"],
                            r"--batch-size: value 0 is not allowed; must be >= 1"),
    "train: unknown config": ([T, "--config", "nope"], r"--config: 'nope' is neither a file nor a bundled config"),
    "train: unknown key": ([T, "--config", "digits-teacher", "epochz=3", "out_dir={out}"], r"epochz: unknown key"),
    "train: old flat key": ([T, "--config", "digits-teacher", "prune_layer=1", "out_dir={out}"],
                            r"prune_layer: unknown key; the pruning settings are one section now: use prune.layer"),
    "train: bad value": ([T, "--config", "digits-teacher", "epochs=0", "out_dir={out}"],
                         r"epochs: value 0 is not allowed; must be >= 1"),
    "train: bad prune value": ([T, "--config", "digits-teacher", "prune.value=0", "out_dir={out}"],
                               r"prune.value: value 0.0 is not allowed; rule 'mass' needs 0 < value <= 1"),
    "train: unsafe model kwargs": ([T, "--config", "digits-teacher", "model_kwargs={{checkpoint_path: /x}}",
                                    "out_dir={out}"], r"model_kwargs: .*key 'checkpoint_path' is not allowed"),
    "train: prune layer past the model": ([T, "--config", "digits-teacher", "model=vit_pico_patch4_32",
                                           "prune.layer=2", "out_dir={out}"],
                                          r"prune.layer: value 2 is not allowed; this 2-block model needs"),
    "train: resume without a run": ([T, "--config", "digits-teacher", "out_dir={out}", "--resume"],
                                    r"--resume: no checkpoint to resume at"),
    "train: unwritable out_dir": ([T, "--config", "digits-teacher", "out_dir={unwritable}"],
                                  r"out_dir: folder '.*blocker/out' is not writable"),
    "demo: unwritable out": ([D, "--out", "{unwritable}", "--cache", "{out}"],
                             r"--out: folder '.*blocker/out' is not writable"),
    "demo: unwritable cache": ([D, "--out", "{out}", "--cache", "{unwritable}"],
                               r"--cache: folder '.*blocker/out' is not writable"),
    "demo: seed not a number": ([D, "--seed", "x", "--out", "{out}"],
                                r"--seed: value 'x' is not allowed; an integer is required"),
    "demo: out holds a report": ([D, "--out", "{reported}", "--cache", "{out}"],
                                 r"--out: folder '.*reported' holds the output of vitaccel report; choose another"),
    "demo: cuda without cuda": ([D, "--device", "cuda", "--out", "{out}", "--cache", "{out}"],
                                r"--device: value 'cuda' is not allowed; no CUDA device is available"),
}


def _tree(root: Path) -> dict[str, tuple]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_exit_2_and_nothing_written(case, files, tmp_path, capsys):
    if "cuda" in case and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    argv, pattern = CASES[case]
    values = {**files, "out": str(tmp_path / "out")}
    argv = [a.format(**values) for a in argv]
    inputs, scratch = Path(files["ckpt"]).parent, tmp_path
    before = _tree(inputs), _tree(scratch)
    cwd = os.getcwd()
    os.chdir(tmp_path)  # a command that wrongly writes to its default place writes here
    try:
        try:
            status = main(argv)
        except SystemExit as exc:  # argparse usage errors
            status = exc.code
    finally:
        os.chdir(cwd)
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert status == 2 and len(lines) == 1, err
    assert lines[0].startswith(f"vitaccel {argv[0]}: error: ") and re.search(pattern, lines[0]), lines[0]
    assert (_tree(inputs), _tree(scratch)) == before
