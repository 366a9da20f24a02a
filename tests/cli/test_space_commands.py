import json

from nas.space import Arch
from tests.helpers import run_nas


def test_space_show_json():
    out = run_nas("space", "show", "--json", check=True).stdout
    info = json.loads(out)   # the only thing on stdout
    assert info["name"] == "efficientformer"
    assert set(info["presets"]) == {"l1", "l3", "l7"}
    assert info["size"]["fine"] > 1e27 and info["size"]["macro"] == 58_858_800


def test_space_show_text_and_help():
    out = run_nas("space", "show", "--space", "tiny", check=True).stdout
    assert "space tiny" in out and "presets:" in out
    assert "--seed" in run_nas("space", "sample", "--help", check=True).stdout


def test_space_sample_is_deterministic():
    first = run_nas("space", "sample", "--n", "5", "--seed", "3", check=True).stdout
    again = run_nas("space", "sample", "--n", "5", "--seed", "3", check=True).stdout
    other = run_nas("space", "sample", "--n", "5", "--seed", "4", check=True).stdout
    assert first == again != other
    lines = first.strip().splitlines()
    assert len(lines) == 5
    assert all(Arch.from_json(line).space == "efficientformer" for line in lines)


def test_bad_input_is_one_line_exit_2(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("stages: [\n")
    for args, needle in [
        (("space", "show", "--space", str(broken)), "is not valid YAML: expected the node content"),
        (("space", "show", "--space", str(tmp_path / "gone.yaml")), "cannot read search space"),
        (("space", "show", "--space", "nope"),
         "unknown search space 'nope'; known: efficientformer, efficientformer_hybrid, tiny, tiny_hybrid"),
        (("space", "sample", "--n", "0"), "0 is not allowed; expected a positive integer"),
        (("space", "sample", "--n", "x"), "'x' is not an integer"),
        (("spaec",), "invalid choice: 'spaec'"),
    ]:
        proc = run_nas(*args)
        assert proc.returncode == 2, args
        assert needle in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
        assert proc.stdout == ""
