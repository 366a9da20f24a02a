"""The bad-input battery (issue #13): every command, fed broken files, numbers and output locations, answers with
exit 2 and one line naming the bad value (exit 1 and one line when the machine refuses: a full disk), never a
traceback, and writes nothing. Run in-process through ``nas.cli.main`` (the same code the ``nas`` script runs),
so the 60-odd cases cost seconds; the subprocess path is covered by the other CLI tests."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from nas.cli import main

SHIPPED_IPHONE12 = Path(__file__).resolve().parents[2] / "latency_luts" / "iphone12.json"


@pytest.fixture(scope="module")
def f(tmp_path_factory, tiny, tiny_iphone12):
    """Broken and mismatched inputs, made once: {name: path}."""
    root = tmp_path_factory.mktemp("battery")
    files = {"missing": root / "missing.json", "folder": root / "folder.json", "out": root / "out"}
    files["folder"].mkdir()
    contents: dict[str, bytes] = {
        "empty": b"", "binary": bytes(range(256)) * 4,
        "utf16": '{"widths": [48, 96]}'.encode("utf-16"),
        "wrong_shape": b"[1, 2, 3]", "truncated": b'{"space": "efficientformer", "widths": [48',
        "tiny_arch": tiny.preset("small").to_json().encode(),
        "text_ckpt": b"not a checkpoint", "bad_yaml": b"space: [unclosed",
        "bad_safetensors": b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage",
        "csv_garbage": b"model,latency\nfoo,bar\n",
        "wrong_keys_table": json.dumps({"schema_version": 1, "header": {}, "entries": {}}).encode(),
        "nan_table": SHIPPED_IPHONE12.read_text().replace('"median_ms": 0.0', '"median_ms": NaN, "x": 0.0', 1).encode(),
        "inf_correction": SHIPPED_IPHONE12.read_text().replace('"scale": 1.0', '"scale": Infinity', 1).encode(),
    }
    for name, data in contents.items():
        suffix = {"bad_yaml": ".yaml", "text_ckpt": ".pt", "bad_safetensors": ".safetensors",
                  "csv_garbage": ".csv"}.get(name, ".json")
        files[name] = root / f"{name}{suffix}"
        files[name].write_bytes(data)
    files["a_file"] = root / "a_file"
    files["a_file"].write_text("I am a file, not a folder")
    one_class = root / "one_class" / "only"
    one_class.mkdir(parents=True)
    from PIL import Image
    for i in range(3):
        Image.new("RGB", (8, 8), (i * 80, 0, 0)).save(one_class / f"{i}.png")
    files["one_class"] = root / "one_class"
    files["tiny_iphone12"] = tiny_iphone12
    files["iphone12"] = SHIPPED_IPHONE12
    return files


# (command with {placeholders} from the fixture, words the one line must contain)
CASES = [
    # space
    ("space show --space {missing}", "missing.json"),
    ("space show --space {empty}", "empty.json"),
    ("space show --space {binary}", "binary.json"),
    ("space show --space {bad_yaml}", "bad_yaml.yaml"),
    ("space sample --n 0", "expected a positive integer"),
    ("space sample --n -3", "expected a positive integer"),
    ("space sample --n 2 --seed nan", "'nan' is not an integer"),
    # predict
    ("predict --device iphone12 --arch {missing}", "missing.json"),
    ("predict --device iphone12 --arch {empty}", "empty.json"),
    ("predict --device iphone12 --arch {folder}", "folder.json"),
    ("predict --device iphone12 --arch {binary}", "not UTF-8"),
    ("predict --device iphone12 --arch {utf16}", "not UTF-8"),
    ("predict --device iphone12 --arch {wrong_shape}", "wrong_shape.json"),
    ("predict --device iphone12 --arch {truncated}", "not valid JSON"),
    ("predict --device iphone12 --arch {tiny_arch}", "tiny"),
    ("predict --device iphone12 --arch l1 --lut {tiny_iphone12}", "space"),
    ("predict --device cpu --arch l1 --lut {iphone12}", "is a table of device 'iphone12'"),
    ("predict --device pixel9 --arch l1", "unknown device 'pixel9'"),
    ("predict --device iphone12 --arch l1 --coverage 1.5", "--coverage"),
    ("predict --device iphone12 --arch l1 --coverage nan", "not finite"),
    ("predict --device iphone12 --arch l1 --lut {wrong_keys_table}", "wrong_keys_table.json"),
    ("predict --device iphone12 --arch l1 --lut {nan_table}", "= nan; expected a finite non-negative number of "
     "milliseconds"),
    ("predict --device iphone12 --arch l1 --lut {inf_correction}", "field 'header.correction.scale' = inf; expected "
     "a positive, finite number"),
    # measure
    ("measure --device iphone12 --arch l1", "--device iphone12 cannot be measured on this machine"),
    ("measure --device cpu --arch {missing}", "missing.json"),
    ("measure --device cpu --arch l1 --lut {tiny_iphone12}", "space"),
    # lut
    ("lut show {missing}", "missing.json"),
    ("lut show {utf16}", "latency table"),
    ("lut show {wrong_shape}", "wrong_shape.json"),
    ("lut show {folder}", "folder.json"),
    ("lut build --device cpu --space tiny --out {a_file}/t.json", "is a file, not a folder"),
    ("lut build --device cpu --space tiny --calibrate -1 --out {out}/t.json", "--calibrate"),
    ("lut build --device nosuch --out {out}/t.json", "unknown device 'nosuch'"),
    ("lut ingest {wrong_shape} {wrong_shape} --out {out}/t.json", "wrong_shape.json"),
    ("lut ingest {missing} {missing} --out {out}/t.json", "missing.json"),
    ("lut validate --device iphone12 --n 2", "iphone12"),
    ("lut validate --device cpu --space tiny --n 0", "expected a number of archs from 1"),
    ("lut adapt --device cpu --from {missing} --out {out}/a.json", "missing.json"),
    ("lut adapt --device cpu --from {binary} --out {out}/a.json", "binary.json"),
    ("lut calibrate --device iphone12 --csv {binary} --out {out}/c.json", "binary.json"),
    ("lut calibrate --device iphone12 --csv {csv_garbage} --out {out}/c.json", "csv_garbage.csv"),
    ("lut check --device iphone12", "estimated table"),
    ("lut refit --device iphone12", "estimated table"),
    ("lut measure {missing} --out {out}/t.json", "missing.json"),
    ("lut estimate --device cpu --out {out}/t.json", "cpu"),
    ("lut estimate --device iphone12 --space {bad_yaml} --out {out}/t.json", "bad_yaml.yaml"),
    # supernet
    ("supernet train --space tiny --data builtin:digits --epochs 0 --out {out}/s.pt", "--epochs"),
    ("supernet train --space tiny --data {missing} --epochs 1 --out {out}/s.pt", "missing.json"),
    ("supernet train --space tiny --data {one_class} --epochs 1 --out {out}/s.pt", "at least two classes"),
    ("supernet train --space tiny --data builtin:nosuch --epochs 1 --out {out}/s.pt", "builtin:nosuch"),
    ("supernet train --space tiny --data builtin:digits --epochs 1 --lr -1 --out {out}/s.pt", "--lr"),
    ("supernet train --space tiny --data builtin:digits --epochs 1 --lr inf --out {out}/s.pt", "not finite"),
    ("supernet train --space tiny --data builtin:digits --epochs 1 --batch-size 0 --out {out}/s.pt",
     "--batch-size"),
    ("supernet train --space tiny --data builtin:digits --epochs 1 --out {a_file}/s.pt", "is a file, not a folder"),
    ("supernet train --space tiny --data builtin:digits --epochs 1 --init-timm {bad_safetensors} --out {out}/s.pt",
     "bad_safetensors.safetensors"),
    ("supernet eval --supernet {text_ckpt} --data builtin:digits --arch l1", "not a readable weights-only"),
    ("supernet eval --supernet {missing} --data builtin:digits --arch l1", "no such file"),
    ("supernet eval --supernet {folder} --data builtin:digits --arch l1", "folder.json"),
    ("supernet importance {text_ckpt}", "text_ckpt.pt"),
    ("supernet rank {text_ckpt} --out {out}/r", "not a readable weights-only"),
    ("supernet rank {missing} --out {out}/r", "no such file"),
    ("supernet rank {text_ckpt} --archs 1 --out {out}/r", "--archs 1: a ranking needs at least 3 archs"),
    ("supernet train --space tiny --data builtin:objects:difficulty=2 --epochs 1 --out {out}/s.pt",
     "difficulty=2 is out of range"),
    # search
    ("search --budget-ms 0 --device iphone12 --out {out}/r", "expected a positive number"),
    ("search --budget-ms 1e400 --device iphone12 --out {out}/r", "finite"),
    ("search --budget-ms 1.6 --device iphone12 --trials 0 --out {out}/r", "--trials"),
    ("search --budget-ms 1.6 --device iphone12 --lut iphone12={binary} --out {out}/r", "binary.json"),
    ("search --budget-ms 1.6 --device iphone12 --lut iphone12={tiny_iphone12} --out {out}/r", "space"),
    ("search --budget-ms 1.6 --device iphone12 --storage {folder} --out {out}/r", "folder.json"),
    ("search --budget-ms 1.6 --device iphone12 --ray-address not-an-address --out {out}/r", "HOST:PORT"),
    ("search --budget-ms 1.6 --device iphone12 --out {a_file}/r", "is a file, not a folder"),
    # export
    ("export {missing} --out {out}/e", "missing.json"),
    ("export {binary} --out {out}/e", "not UTF-8"),
    ("export l1 --format pt --supernet {text_ckpt} --out {out}/e", "not a readable weights-only"),
    ("export l1 --format pt --out {a_file}", "is a file"),
    ("export l1 --format pt,xx --out {out}/e", "unknown format xx"),
    ("export l1 --format pt --data {one_class} --out {out}/e", "one class (only)"),
    # devices, dashboard
    ("devices --space {missing}", "missing.json"),
    ("dashboard {missing}", "missing.json"),
    ("dashboard {folder}", "no run.json and no study.log"),
]


@pytest.mark.parametrize("command, words", CASES, ids=[c for c, _ in CASES])
def test_bad_input_is_one_line_exit_2_and_nothing_written(f, command, words, capsys):
    argv = command.format(**{k: str(v) for k, v in f.items()}).split()
    before = sorted(f["out"].rglob("*")) if f["out"].exists() else []
    environ = dict(os.environ)
    try:
        code = main(argv)
    finally:   # in-process: what a command sets for itself (RAY_AUTH_MODE for a join) must not leak into later tests
        os.environ.clear()
        os.environ.update(environ)
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if not line.startswith(("note:", "nas: note:"))]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("nas: error: ") and words in lines[0], err
    assert "Traceback" not in err
    assert (sorted(f["out"].rglob("*")) if f["out"].exists() else []) == before     # nothing written


def test_the_battery_covers_every_command_with_40_cases_or_more():
    from nas.cli import build_parser

    commands = {" ".join(c.split()[:2]) if c.split()[0] in ("space", "lut", "supernet") else c.split()[0]
                for c, _ in CASES}
    parser = build_parser()
    groups = parser._subparsers._group_actions[0].choices    # type: ignore[union-attr]
    every = set()
    for name, sub in groups.items():
        nested = [a for a in sub._actions if a.__class__.__name__ == "_SubParsersAction"]
        every |= {f"{name} {n}" for n in nested[0].choices} if nested else {name}
    assert len(CASES) >= 40 and every <= commands | {"supernet importance"}, every - commands


def test_every_option_of_every_command_has_help_text():
    import argparse

    from nas.cli import build_parser

    missing = []

    def walk(parser: argparse.ArgumentParser, prefix: list[str]) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, [*prefix, name])
            elif not isinstance(action, argparse._HelpAction) and not action.help:
                missing.append(f"nas {' '.join(prefix)} {action.option_strings or action.dest}")

    walk(build_parser(), [])
    assert not missing


def test_a_checkpoint_whose_tensors_do_not_fit_the_space_names_the_first_bad_tensor(tmp_path, tiny, capsys):
    import torch

    from supernet import Supernet
    from supernet.checkpoint import save_supernet

    path = tmp_path / "supernet.pt"
    save_supernet(Supernet(tiny), path)
    payload = torch.load(path, weights_only=True)
    key = next(k for k, v in payload["state_dict"].items() if v.dim() == 4)
    payload["state_dict"][key] = torch.zeros(3, 3, 3, 3)          # another width
    torch.save(payload, path)
    assert main(["supernet", "eval", "--supernet", str(path), "--data", "builtin:digits", "--arch", "small"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and f"tensor '{key}' is (3, 3, 3, 3), the space's is" in err


def test_json_the_tool_writes_has_no_infinity_or_nan(tmp_path):
    from nas.fileio import write_json_atomic

    write_json_atomic(tmp_path / "r.json", {"tau": float("nan"), "rows": [{"upper_ms": float("inf")}]})
    text = (tmp_path / "r.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"tau": None, "rows": [{"upper_ms": None}]}
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o666 & ~umask     # 0644 under the usual umask 022


@pytest.fixture(params=["full", "read-only"])
def broken_disk(request, tmp_path):
    """A 64 KiB tmpfs filled to the last byte, or mounted read-only, and the message each gives (needs root and
    mount; skipped, saying so, where it cannot be made)."""
    import shutil
    import subprocess

    mount = tmp_path / "disk"
    mount.mkdir()
    options = "size=64k" + (",ro" if request.param == "read-only" else "")
    made = shutil.which("mount") and subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount)],
                                                    capture_output=True).returncode == 0
    if not made:
        pytest.skip("cannot mount a small tmpfs here (needs root); the full-disk case runs where it can")
    try:
        if request.param == "full":
            with open(mount / "filler", "wb", buffering=0) as filler:
                try:
                    while True:
                        filler.write(b"\0" * 512)
                except OSError:
                    pass
        yield mount, "No space left on device" if request.param == "full" else "Read-only file system"
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


@pytest.mark.parametrize("command", [
    "export l1 --format pt --out {full}/export",
    "supernet train --space tiny --data builtin:digits --epochs 1 --out {full}/ckpt/s.pt",
    "search --budget-ms 1.6 --device iphone12 --trials 2 --out {full}/run",
    "lut estimate --device iphone12 --space tiny --out {full}/t.json",
])
def test_a_full_or_read_only_disk_is_one_line_exit_1_before_any_work(broken_disk, command, capsys):
    disk, reason = broken_disk
    assert main(command.format(full=disk).split()) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if not line.startswith(("note:", "nas: note:"))]
    assert len(lines) == 1 and reason in lines[0] and "Traceback" not in err, err
