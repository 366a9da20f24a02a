"""The second battery (issue #26): hostile and careless inputs none of the first battery tried: keys given twice,
out-of-range integers, names that would leave their folder, checkpoints and run files of the wrong shape, outputs
of the wrong kind or owned by someone else, over-long names, cut and corrupt studies. Each answers in one line
with exit 2 (exit 1 where the machine, not the input, refuses), never a traceback, and writes nothing.

In-process through ``nas.cli.main``, like the first battery; the few cases that need a real pipe or a finished
search run below it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nas.cli import main

SHIPPED_IPHONE12 = Path(__file__).resolve().parents[2] / "latency_luts" / "iphone12.json"
EVIL_SPACE = """name: ../../evil
stages:
  - {widths: [8], depths: {min: 1, max: 1}}
  - {widths: [16], depths: {min: 1, max: 1}}
mlp_ratios: [2]
n3d: {min: 0, max: 0}
attention: {mixers: {mhsa: {heads: [2], key_dims: [8]}}}
"""


@pytest.fixture(scope="module")
def f(tmp_path_factory, tiny):
    import torch

    root = tmp_path_factory.mktemp("hostile")
    files: dict[str, Path] = {"out": root / "out", "folder": root / "folder", "foreign": root / "foreign"}
    files["folder"].mkdir()
    files["foreign"].mkdir()
    (files["foreign"] / "thesis.tex").write_text("a user's own file")
    arch = tiny.preset("small").to_dict()
    texts = {
        "dup_arch.json": json.dumps(arch)[:-1] + ', "space": "tiny"}',
        "dup_table.json": SHIPPED_IPHONE12.read_text().replace('"header": {', '"header": {"kind": "measured", ', 1),
        "run_list/run.json": "[1, 2]",
        "run_int_storage/run.json": json.dumps({"storage": 5}),
        "evil_space.yaml": EVIL_SPACE,
        "slash_space.yaml": EVIL_SPACE.replace("../../evil", "a/b"),
        "corrupt.log": '{"op_code": 0, "worker_id": "x"}\nnot json at all\n{"op_code": 1}\n',
        "garbage.db": "this is not an SQLite database, whatever its name says\n" * 20,
        "a_file": "I am a file, not a folder",
        "thesis.tex": "\\documentclass{article} a user's own work",
        "own.json": json.dumps({"experiment": 3, "notes": "a user's own results"}),
        "text_ckpt.pt": "not a checkpoint",
        "bad_run/best_arch.json": json.dumps(arch),
        "bad_run/run.json": json.dumps({"best": {"objective": "high"}, "budgets": [{"device": "cpu"}]}),
        "bad_slim/.nas-output": "{}",
        "bad_slim/slim.json": json.dumps({"schema": "x", "config": {}, "steps": [{"arch": 5}], "evaluations": 0,
                                          "evaluated": {}}),
        "manifest.json": json.dumps({"header": {"schema": "nas-coreml-manifest/1", "device": "iphone12"},
                                     "packages": []}),
        "timings.json": json.dumps({"header": {"schema": "nas-coreml-timings/1"},
                                    "timings": {"op-0000": {"median_ms": -1}}}),
        "bad_point_table.json": SHIPPED_IPHONE12.read_text().replace(
            '"calibration": []', '"calibration": [{"arch_json": "{}", "measured_ms": -2}]', 1),
        # one per schema the hand-written checks became: tables, space YAMLs, archs (nas/schemas.py)
        "guessed_table.json": SHIPPED_IPHONE12.read_text().replace('"kind": "estimated"', '"kind": "guessed"', 1),
        "no_n_table.json": SHIPPED_IPHONE12.read_text().replace(', "n": 0}', '}', 1).replace(',\n   "n": 0\n', '\n', 1),
        "typo_space.yaml": EVIL_SPACE.replace("../../evil", "typo").replace("mlp_ratios:", "mlp_ratio:"),
        "empty_range_space.yaml": EVIL_SPACE.replace("../../evil", "empty").replace("{min: 0, max: 0}",
                                                                                    "{min: 2, max: 1}"),
        "text_classes_space.yaml": EVIL_SPACE.replace("../../evil", "classes") + "num_classes: ten\n",
        "one_stage_space.yaml": EVIL_SPACE.replace("../../evil", "one").replace(
            "  - {widths: [16], depths: {min: 1, max: 1}}\n", ""),
        "knob_space.yaml": EVIL_SPACE.replace("../../evil", "knob").replace("key_dims: [8]", "key_dim: [8]"),
        "typo_arch.json": json.dumps({**arch, "width": [16, 32, 48, 64]}),
        "text_n3d_arch.json": json.dumps({**arch, "n3d": "one"}),
        "nested_arch.json": json.dumps({**arch, "mlp_ratios": [2, 2, 2, 2]}),
    }
    for name, text in texts.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        files[name.split("/")[0].split(".")[0]] = path.parent if "/" in name else path
    good = {"format": "nas-supernet/1", "space": "tiny", "state_dict": {"w": torch.zeros(1)}}
    for name, change in {"ckpt_list_weights": {"state_dict": [1, 2]}, "ckpt_space_int": {"space": 5},
                         "ckpt_bad_classes": {"num_classes": -3}, "ckpt_meta_list": {"meta": [1]}}.items():
        files[name] = root / f"{name}.pt"
        torch.save({**good, **change}, files[name])
    files["own_png"] = root / "own.png"      # a figure of the user's own: a PNG without nas's text chunk
    files["own_png"].write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    files["own_ckpt"] = root / "own.pt"      # a torch checkpoint, but not nas's
    torch.save({"model": {"w": torch.zeros(1)}}, files["own_ckpt"])
    files["long"] = root / ("x" * 300)
    files["iphone12"] = SHIPPED_IPHONE12
    return files


SEARCH = "search --budget-ms 1.6 --device iphone12 --trials 2 --export none"
CASES = [
    # a key given twice: plain JSON keeps the last one silently
    ("predict --device iphone12 --arch {dup_arch}", "'space' is given twice"),
    ("predict --device iphone12 --arch l1 --lut {dup_table}", "'kind' is given twice"),
    ("lut show {dup_table}", "'kind' is given twice"),
    (SEARCH + " --lut iphone12={dup_table} --out {out}/r", "'kind' is given twice"),
    # integers out of range: seeds go to numpy and Optuna (32 bits), ports to a socket
    (SEARCH + " --seed -1 --out {out}/r", "expected a seed from 0 to 4294967295"),
    (SEARCH + " --seed 4294967296 --out {out}/r", "is out of range; expected a seed"),
    (SEARCH + " --seed 100000000000000000000000 --out {out}/r", "is out of range"),
    (SEARCH + " --seed 1.5 --out {out}/r", "'1.5' is not an integer"),
    ("space sample --n 2 --seed -5", "expected a seed"),
    ("supernet train --space tiny --data builtin:digits --epochs 1 --seed 99999999999 --out {out}/s.pt",
     "expected a seed"),
    ("supernet train --space tiny --data builtin:digits --epochs 1 --seed abc --out {out}/s.pt", "not an integer"),
    ("supernet rank {text_ckpt} --seed -1 --out {out}/r", "expected a seed"),
    ("dashboard {run_list} --port 0", "expected a TCP port from 1 to 65535"),
    ("dashboard {run_list} --port 65536", "expected a TCP port"),
    ("dashboard {run_list} --port 99999999999999", "expected a TCP port"),
    ("lut validate --device cpu --space tiny --n 1000000000 --rounds 1000000000", "expected a number of archs from 1"),
    ("lut validate --device cpu --space tiny --rounds 1000000000", "expected a number of rounds from 1 to 100"),
    ("lut build --device cpu --space tiny --rounds 101 --out {out}/t.json", "expected a number of rounds"),
    ("lut build --device cpu --space tiny --calibrate 20000 --out {out}/t.json", "expected a number of archs"),
    ("lut adapt --device cpu --from {iphone12} --repeats 1000 --out {out}/a.json", "a number of repeats"),
    # names that become file names must stay in their folder
    (SEARCH + " --study ../../evil --out {out}/r", "'../../evil': not usable as a file name"),
    (SEARCH + " --study .hidden --out {out}/r", "not usable as a file name"),
    (SEARCH + " --study a/b --out {out}/r", "not usable as a file name"),
    (SEARCH + " --study " + "s" * 200 + " --out {out}/r", "not usable as a file name"),
    ("space show --space {evil_space}", "'../../evil' is not usable as a file name"),
    ("space show --space {slash_space}", "'a/b' is not usable as a file name"),
    ("lut estimate --device iphone12 --space {evil_space} --out {out}/t.json", "not usable as a file name"),
    (SEARCH + " --space {evil_space} --out {out}/r", "not usable as a file name"),
    # checkpoints of the right format tag but the wrong fields
    ("supernet eval --supernet {ckpt_list_weights} --data builtin:digits",
     "field 'state_dict' = [1, 2]; expected a mapping of names to tensors"),
    ("supernet eval --supernet {ckpt_space_int} --data builtin:digits", "field 'space' = 5"),
    ("supernet eval --supernet {ckpt_bad_classes} --data builtin:digits", "field 'num_classes' = -3"),
    ("supernet eval --supernet {ckpt_meta_list} --data builtin:digits", "field 'meta' = [1]; expected a mapping"),
    ("supernet importance {ckpt_space_int}", "field 'space' = 5"),
    ("supernet rank {ckpt_list_weights} --out {out}/r", "field 'state_dict'"),
    ("export l1 --format pt --supernet {ckpt_space_int} --out {out}/e", "field 'space' = 5"),
    (SEARCH + " --supernet {ckpt_bad_classes} --data builtin:digits --out {out}/r", "field 'num_classes'"),
    # run files of the wrong shape
    ("dashboard {run_list}", "run.json: the top level = [1, 2]; expected a JSON object ({...})"),
    ("dashboard {run_int_storage}", "field 'storage' = 5"),
    # files of the right syntax and the wrong shape, checked by one schema per kind (nas/schemas.py)
    ("export {bad_run} --format pt --out {out}/e", "run summary"),
    (SEARCH + " --strategy slim --out {bad_slim}", "slimming record"),
    ("lut ingest {manifest} {timings} --out {out}/t.json", "field 'space' is missing in header"),
    ("lut measure {manifest} --out {out}/t.json", "field 'space' is missing in header"),
    ("predict --device iphone12 --arch l1 --lut {bad_point_table}", "field 'calibration[0].measured_ms' = -2"),
    # tables, space YAMLs and archs, each checked by its schema (nas/schemas.py) before its values
    ("predict --device iphone12 --arch l1 --lut {guessed_table}", "field 'header.kind' = 'guessed'; expected "
     "measured or estimated or adapted"),
    ("lut show {no_n_table}", "field 'n' is missing in entries."),
    ("space show --space {typo_space}", "field 'mlp_ratio' is unknown; allowed fields: name, description"),
    ("space show --space {empty_range_space}", "field 'n3d' = {'min': 2, 'max': 1} holds no value"),
    ("space show --space {text_classes_space}", "field 'num_classes' = 'ten'; expected a number of classes"),
    ("lut estimate --device iphone12 --space {one_stage_space} --out {out}/t.json", "expected a list of at least 2"),
    ("space show --space {knob_space}", "field 'key_dim' is unknown in attention.mixers.mhsa; allowed fields: "
     "heads, key_dims, attn_ratio"),
    ("predict --device cpu --space tiny --arch {typo_arch}", "field 'width' is unknown; allowed fields: space"),
    ("predict --device cpu --space tiny --arch {text_n3d_arch}", "field 'n3d' = 'one'; expected a non-negative"),
    ("export {nested_arch} --format pt --out {out}/e", "field 'mlp_ratios[0]' = 2; expected a list of integers"),
    # a device's second table
    (SEARCH + " --lut iphone12={iphone12} --lut iphone12={iphone12} --out {out}/r", "is given twice"),
    # outputs of the wrong kind, or folders the tool did not make
    (SEARCH + " --out {a_file}", "is a file; give a folder"),
    (SEARCH + " --out {foreign}", "folder with files that nas did not write"),
    ("supernet rank {text_ckpt} --out {foreign}", "folder with files that nas did not write"),
    ("supernet rank {text_ckpt} --out {a_file}", "is a file; give a folder"),
    ("export l1 --format pt --out {foreign}", "folder with files that nas did not write"),
    ("lut validate --device iphone12 --plot {folder}", "is a folder; give a file path"),
    ("supernet importance {text_ckpt} --plot {folder}", "is a folder; give a file path"),
    ("lut calibrate --device iphone12 --csv {a_file} --plot {folder} --out {out}/c.json", "is a folder"),
    ("lut build --device cpu --space tiny --out {folder}", "is a folder; give a file path"),
    ("lut estimate --device iphone12 --space tiny --out {folder}", "is a folder; give a file path"),
    ("supernet train --space tiny --data builtin:digits --epochs 1 --out {folder}", "is a folder"),
    ("lut estimate --device iphone12 --space tiny --out {thesis}", "is not a file nas wrote"),
    ("supernet train --space tiny --data builtin:digits --epochs 1 --out {thesis}", "is not a file nas wrote"),
    ("lut validate --device iphone12 --plot {thesis}", "is not a file nas wrote"),
    ("lut estimate --device iphone12 --space tiny --out {own}", "own.json exists and is not a file nas wrote"),
    ("lut calibrate --device iphone12 --out {own}", "own.json exists and is not a file nas wrote"),
    ("lut validate --device iphone12 --plot {own_png}", "own.png exists and is not a file nas wrote"),
    ("supernet importance {text_ckpt} --plot {own_png}", "own.png exists and is not a file nas wrote"),
    ("supernet train --space tiny --data builtin:digits --epochs 1 --out {own_ckpt}", "own.pt exists and is not a "
     "file nas wrote"),
    (SEARCH + " --out {long}", "too long for the file system"),
    ("export l1 --format pt --out {long}", "too long for the file system"),
    ("lut estimate --device iphone12 --space tiny --out {long}.json", "too long for the file system"),
    # stored studies that cannot be read
    (SEARCH + " --storage {corrupt} --out {out}/r", "the journal is corrupt"),
    (SEARCH + " --storage sqlite:///{garbage} --out {out}/r", "file is not a database"),
]
# the machine refuses, not the input: exit 1
ENVIRONMENT_CASES = [
    # a Ray address with no head behind it, even where the objective runs here and Ray is not needed
    (SEARCH + " --ray-address 127.0.0.1:1 --out {out}/r", "no Ray head answers there"),
]


def _run(argv: list[str]) -> int:
    environ = dict(os.environ)
    try:
        return main(argv)
    finally:
        os.environ.clear()
        os.environ.update(environ)


def _one_line(err: str) -> list[str]:
    return [line for line in err.strip().splitlines() if not line.startswith(("note:", "nas: note:"))]


@pytest.mark.parametrize("command, words, status", [(c, w, 2) for c, w in CASES] + [(c, w, 1) for c, w in
                                                                                     ENVIRONMENT_CASES],
                         ids=[c[:90] for c, _ in CASES + ENVIRONMENT_CASES])
def test_hostile_input_is_one_line_exit_2_and_nothing_written(f, command, words, status, capsys):
    argv = command.format(**{k: str(v) for k, v in f.items()}).split()
    before = {p: p.stat().st_mtime_ns for p in f["out"].parent.rglob("*")}
    code = _run(argv)
    err = capsys.readouterr().err
    lines = _one_line(err)
    assert code == status, err
    assert len(lines) == 1 and lines[0].startswith("nas: error: ") and words in lines[0], err
    assert "Traceback" not in err
    assert {p: p.stat().st_mtime_ns for p in f["out"].parent.rglob("*")} == before     # nothing written or touched


def test_the_second_battery_holds_60_cases_with_the_functional_ones():
    functional = [name for name in globals() if name.startswith("test_") and "battery" not in name
                  and name != "test_hostile_input_is_one_line_exit_2_and_nothing_written"]
    assert len(CASES) + len(ENVIRONMENT_CASES) + len(functional) >= 60, (len(CASES), len(functional))


@pytest.mark.parametrize("variable", ["NAS_LUT_DIR", "HOME"])
def test_a_cache_folder_that_is_a_file_is_one_line_exit_1(f, variable, monkeypatch, capsys):
    monkeypatch.delenv("NAS_LUT_DIR", raising=False)
    monkeypatch.setenv(variable, str(f["a_file"]))
    assert _run("lut estimate --device iphone12 --space tiny --no-progress".split()) == 1
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if "error" in line] == [err.strip().splitlines()[-1]]
    assert "a file is in the way" in err and "Traceback" not in err


def test_a_home_where_nothing_can_be_written_still_searches(tmp_path, monkeypatch, capsys):
    """The op-count cache is a cache: it cannot be written under a read-only home, and the search goes on."""
    monkeypatch.delenv("NAS_LUT_DIR", raising=False)
    monkeypatch.setenv("HOME", "/proc")
    assert _run((SEARCH + f" --out {tmp_path}/r --json").split()) == 0
    err = capsys.readouterr().err
    assert "op-count cache" in err and "Traceback" not in err
    assert (tmp_path / "r" / "best_arch.json").is_file()


def test_a_reader_that_goes_away_ends_quietly():
    """``nas space sample --n 20000 | head -1``: exit 0 and no traceback once head has its line."""
    shell = f"{sys.executable} -m nas space sample --n 20000 | head -1"
    done = subprocess.run(["bash", "-o", "pipefail", "-c", shell], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 1 and "Traceback" not in done.stderr and "Broken pipe" not in done.stderr


def test_a_password_in_the_url_query_is_masked():
    from nas.search.storage import mask_url

    shown = mask_url("postgresql://u@db.example:5432/nas?sslmode=require&password=hunter2&Token=abc")
    assert "hunter2" not in shown and "abc" not in shown and "sslmode=require" in shown
    assert mask_url("postgresql://u:hunter2@db/nas") == "postgresql://u:***@db/nas"


def test_two_writers_of_one_output_end_with_one_whole_result(tmp_path):
    """Interleaved: both stage in folders of their own, the later replace wins whole, no staging is left."""
    from nas.fileio import atomic_output

    target = tmp_path / "export"
    first, second = atomic_output(target), atomic_output(target)
    a, b = first.__enter__(), second.__enter__()
    assert a != b
    for staging, files in ((a, ["model.pt", "model.onnx", "export_check.json"]), (b, ["model.pt", "README.md"])):
        staging.mkdir()
        for name in files:
            (staging / name).write_text(staging.name)
    first.__exit__(None, None, None)
    second.__exit__(None, None, None)
    assert sorted(p.name for p in target.iterdir()) == ["README.md", "model.pt"]
    assert {p.read_text() for p in target.iterdir()} == {b.name}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


def test_a_file_output_never_replaces_a_folder(tmp_path):
    from nas.errors import UsageError
    from nas.fileio import atomic_output

    (tmp_path / "plot.png").mkdir()
    (tmp_path / "plot.png" / "keep.txt").write_text("mine")
    with pytest.raises(UsageError, match="is a folder; expected a file path"), atomic_output(tmp_path / "plot.png") \
            as staging:
        staging.write_bytes(b"png")
    assert (tmp_path / "plot.png" / "keep.txt").read_text() == "mine"


@pytest.fixture(scope="module")
def tiny_search(tiny_iphone12):
    """``nas search`` on ``tiny`` with the capacity proxy (a second), minus --trials and --out."""
    return f"search --space tiny --budget-ms 0.3 --device iphone12 --lut iphone12={tiny_iphone12} --export none"


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_search):
    """A finished 4-trial search."""
    out = tmp_path_factory.mktemp("finished") / "run"
    assert _run(f"{tiny_search} --trials 4 --out {out}".split()) == 0
    return out


def test_outputs_carry_the_mark_of_the_tool(finished_run):
    from nas.fileio import OWNER_MARK

    assert json.loads((finished_run / OWNER_MARK).read_text()) == {"written_by": "nas search"}


def test_a_journal_cut_mid_record_is_read_to_its_last_whole_record_and_the_resume_finishes(finished_run, tiny_search,
                                                                                          tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    journal = run / "study.log"
    whole = journal.read_bytes()
    journal.write_bytes(whole + whole.splitlines(keepends=True)[-1][:25])     # a record cut by a kill
    capsys.readouterr()
    assert _run(f"{tiny_search} --trials 6 --out {run} --json".split()) == 0
    captured = capsys.readouterr()
    assert "its last record was cut short (25 bytes" in captured.err and "Traceback" not in captured.err
    import optuna

    from nas.search.storage import make_storage

    study = optuna.load_study(study_name=None, storage=make_storage(str(journal)))
    assert len(study.trials) == 6


def test_a_corrupt_journal_is_named_and_left_as_it_was(finished_run, tiny_search, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    journal = run / "study.log"
    lines = journal.read_bytes().splitlines(keepends=True)
    broken = b"".join([*lines[:2], b"}}} not a record\n", *lines[2:]])
    journal.write_bytes(broken)
    code = _run(f"{tiny_search} --trials 6 --out {run}".split())
    err = capsys.readouterr().err
    assert code == 2 and "the journal is corrupt" in err and "left as it was" in err and "Traceback" not in err
    assert journal.read_bytes() == broken


@pytest.mark.parametrize("planted", ["trials.csv", "run.json", "study.log"])
def test_a_link_planted_in_a_run_directory_is_not_followed(finished_run, tiny_search, tmp_path, planted,
                                                            capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (run / planted).unlink()
    (run / planted).symlink_to(victim)
    code = _run(f"{tiny_search} --trials 6 --out {run}".split())
    err = capsys.readouterr().err
    assert code == 2 and f"{planted} is a symbolic link" in err
    assert victim.read_text() == "precious"


def test_a_correction_with_a_negative_scale_is_not_kept():
    from nas.latency.correction import fit_points

    raw = [1.0, 1.1, 1.2]
    fit = fit_points(raw, [3.0, 1.2, 1.0], ["s1"] * 3)      # three noisy points fall as the sums rise
    assert fit.scale > 0 and all(fit.scale * x + fit.offset_ms > 0 for x in raw)


def test_a_correction_that_worsens_its_points_is_dropped_and_says_so():
    from nas.latency.correction import fit_points

    # least squares follows the one slow outlier, which costs the three others more relative error than it saves
    fit = fit_points([17.5, 21.8, 48.3, 28.3], [17.5, 20.8, 130.3, 25.7], ["s"] * 4)
    assert (fit.scale, fit.offset_ms) == (1.0, 0.0) and fit.mape_after == fit.mape_before
    assert fit.note is not None and "no correction kept" in fit.note and "19.5% -> 20.9%" in fit.note


@pytest.mark.parametrize("edit", ["relabel", "entry"])
def test_a_table_edited_by_hand_is_not_vouched_for(tmp_path, tiny_iphone12, edit, capsys):
    from nas.latency.table import LatencyTable

    table = LatencyTable.load(tiny_iphone12)
    path = tmp_path / "t.json"
    table.save(path)
    capsys.readouterr()
    LatencyTable.load(path)
    assert "not vouched for" not in capsys.readouterr().err       # as written: quiet
    data = json.loads(path.read_text())
    if edit == "relabel":
        data["header"]["kind"] = "measured"
    else:
        key = next(iter(data["entries"]))
        data["entries"][key]["median_ms"] *= 0.5
    path.write_text(json.dumps(data))
    LatencyTable.load(path)
    err = capsys.readouterr().err
    assert "does not match the digest it was written with" in err and "not vouched for" in err


def test_a_dashboard_on_a_busy_port_says_so(finished_run, capsys):
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        assert _run(f"dashboard {finished_run} --port {port}".split()) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [f"nas: error: --port {port}: another program listens on 127.0.0.1:{port}; "
                                        "stop it or choose another --port"]


def test_a_dashboard_host_that_is_not_here_is_refused(finished_run, capsys):
    assert _run(f"dashboard {finished_run} --host 203.0.113.9 --port 8080".split()) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--host 203.0.113.9: cannot listen there" in err


def test_outputs_are_readable_by_others_as_usual_files_are(tmp_path):
    """safetensors and coremltools write 0600/0700; what nas hands over has the usual modes (umask applied)."""
    from nas.fileio import atomic_output

    with atomic_output(tmp_path / "export") as staging:
        (staging / "weights").mkdir(parents=True, mode=0o700)
        (staging / "weights" / "model.safetensors").write_bytes(b"w")
        (staging / "weights" / "model.safetensors").chmod(0o600)
    umask = os.umask(0)
    os.umask(umask)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "export").rglob("*")}
    assert modes == {"weights": 0o777 & ~umask, "model.safetensors": 0o666 & ~umask}


def test_ray_usage_reporting_is_off_unless_the_user_turns_it_on():
    env = {k: v for k, v in os.environ.items() if k != "RAY_USAGE_STATS_ENABLED"}
    code = "import nas, os; print(os.environ['RAY_USAGE_STATS_ENABLED'])"
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout == "0\n"
    env["RAY_USAGE_STATS_ENABLED"] = "1"
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout == "1\n"


def test_predict_takes_an_export_folder(tmp_path, capsys):
    from nas.space import load_space

    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "arch.json").write_text(load_space("efficientformer").preset("l1").to_json())
    assert _run(f"predict --device iphone12 --arch {tmp_path / 'export'} --json".split()) == 0
    assert json.loads(capsys.readouterr().out)["arch"]["widths"] == [48, 96, 224, 448]


def test_a_build_on_a_busy_machine_or_with_a_poor_calibration_warns_and_records_it():
    from nas.latency.table import trust_warnings

    quiet = {"load": {"load_1m": 0.4, "cores": 2}, "reference": {"spread_pct": 3.0},
             "correction": {"mape_after": 4.1}}
    assert trust_warnings(quiet) == []
    busy = {"load": {"load_1m": 7.0, "cores": 2}, "reference": {"spread_pct": 61.0},
            "correction": {"mape_after": 40.4}}
    said = trust_warnings(busy)
    assert len(said) == 3
    assert "busy machine (load 7.0 on 2 cores" in said[0] and "moved 61%" in said[1] and "MAPE 40.4%" in said[2]
    assert "--rounds 2" in said[1] and "nas lut check --refit" in said[1]     # the remedy, for a one-pass build
    two_passes = trust_warnings({**busy, "rounds": 2})[1]
    assert "moved 61%" in two_passes and "--rounds" not in two_passes and "nas lut check --refit" in two_passes


@pytest.fixture
def small_disk(tmp_path):
    """A 96 KiB tmpfs that a search fills part-way (needs root and mount; skipped, saying so, elsewhere)."""
    import shutil

    mount = tmp_path / "disk"
    mount.mkdir()
    if not (shutil.which("mount") and subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(mount)],
                                                     capture_output=True).returncode == 0):
        pytest.skip("cannot mount a small tmpfs here (needs root); the disk-fills-mid-search case runs where it can")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_disk_that_fills_mid_search_loses_no_finished_trial_and_the_resume_finishes_exactly(small_disk, tiny_search,
                                                                                             capsys):
    import optuna

    from nas.search.storage import make_storage

    run = small_disk / "run"
    command = f"{tiny_search} --trials 300 --no-progress --out {run}".split()
    assert _run(command) == 1                                   # the disk filled: one line, exit 1
    err = capsys.readouterr().err
    assert "No space left on device" in _one_line(err)[-1] and len(_one_line(err)) == 1 and "Traceback" not in err
    journal = str(run / "study.log")
    done = len(optuna.load_study(study_name=None, storage=make_storage(journal)).trials)
    assert 10 < done < 300                                      # it stopped part-way, with what it had finished
    subprocess.run(["mount", "-o", "remount,size=4m", str(small_disk)], check=True)   # space freed
    assert _run(command) == 0
    trials = optuna.load_study(study_name=None, storage=make_storage(journal)).trials
    assert len(trials) == 300 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)


def test_an_error_raised_while_a_sigterm_unwinds_is_not_reported_instead_of_the_stop(monkeypatch, capsys):
    """SIGTERM mid-work, then the unwinding itself fails (Optuna's journal lock released by a ``finally`` that never
    got to take it: a FileNotFoundError): the stop is what is said, exit 143, not the second error."""
    import argparse
    import signal
    import time

    import nas.cli as cli

    def handler(args: argparse.Namespace) -> int:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
            return 0
        finally:
            raise FileNotFoundError(2, "No such file or directory", "study.log.lock")

    parser = argparse.ArgumentParser()
    parser.set_defaults(func=handler, command="search")
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    monkeypatch.setattr(cli, "check_outputs", lambda args: None)
    monkeypatch.setattr(cli, "yield_idle_threads", lambda args: None)
    assert cli.main([]) == 128 + signal.SIGTERM
    assert capsys.readouterr().err.strip().splitlines() == [
        "nas: stopped by SIGTERM; everything finished before it is kept: run the same command again to go on (with "
        "--resume where the command has one)"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL or callable(signal.getsignal(signal.SIGTERM))
