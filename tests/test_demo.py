"""The main job's pieces: cached training, report rendering, multiplier samples."""

import torch

from vitaccel.commands.demo import cached_training, formats_table
from vitaccel.commands.report import multiplier_error_samples
from vitaccel.viz.report import Section, write_report

TINY = ["epochs=1", "model=vit_pico_patch4_32", "prune.layer=1", "progress=false", "batch_size=128", "warmup_epochs=0"]


def test_cache_is_reused_and_a_corrupt_or_stale_cache_is_rebuilt(tmp_path, capsys):
    torch.set_num_threads(1)
    out = tmp_path / "teacher"
    path = cached_training("digits-teacher", out, TINY)
    assert "training digits-teacher" in capsys.readouterr().out and path.is_file()
    first = path.read_bytes()
    assert cached_training("digits-teacher", out, TINY) == path
    assert "reusing cached" in capsys.readouterr().out and path.read_bytes() == first
    path.write_bytes(b"not a checkpoint")                           # corrupt: detected, rebuilt
    cached_training("digits-teacher", out, TINY)
    text = capsys.readouterr().out
    assert "unusable" in text and "training digits-teacher" in text
    cached_training("digits-teacher", out, TINY + ["lr=0.00123"])     # stale: another config
    assert "another config" in capsys.readouterr().out


def test_report_files_hold_tables_and_figures(tmp_path):
    header, rows = formats_table()
    md, html = write_report(tmp_path, "t", [Section("Formats", ["text"], [(header, rows)], [("f.png", "cap")])])
    assert "| e5m7 (FP13) | 13 | 65280 |" in md.read_text()
    assert "<td>e5m7 (FP13)</td>" in html.read_text() and 'src="f.png"' in html.read_text()


def test_multiplier_samples_cover_each_distinct_truncating_multiplier():
    errors = multiplier_error_samples(["int8", "int8-lot4", "int8-lot4-psum", "fp13"])
    assert list(errors) == ["k=4 unbiased (int8-lot4, int8-lot4-psum)", "k=4 truncate"]
    assert float(errors["k=4 truncate"].max()) <= 0 < float(errors["k=4 unbiased (int8-lot4, int8-lot4-psum)"].max())
    assert len(errors["k=4 truncate"]) == 127


def test_a_moved_cache_is_reused_teacher_paths_included(tmp_path, capsys):
    torch.set_num_threads(1)
    old, new = tmp_path / "old", tmp_path / "new"
    teacher = cached_training("digits-teacher", old / "teacher", TINY)
    student_overrides = TINY + [f"teacher={teacher}", f"init={teacher}"]
    cached_training("digits-sait", old / "sait", student_overrides)
    old.rename(new)
    capsys.readouterr()
    moved_teacher = cached_training("digits-teacher", new / "teacher", TINY)
    cached_training("digits-sait", new / "sait", TINY + [f"teacher={moved_teacher}", f"init={moved_teacher}"])
    text = capsys.readouterr().out
    assert text.count("reusing cached") == 2 and "training" not in text
