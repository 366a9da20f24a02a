"""A non-editable install (a built wheel) must find the data folders at run time."""
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_ships_data_and_loads_spaces(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist"), str(ROOT)], check=True, capture_output=True)
    wheel = next((tmp_path / "dist").glob("vit_latency_nas-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for needed in ["search_spaces/efficientformer.yaml", "search_spaces/tiny.yaml", "nas/cli/__init__.py",
                   "nas/cli/search.py", "nas/export/writers.py", "nas/latency/costmodel/model.py",
                   "nas/latency/remote/manifest.py", "nas/latency/remote/onnx_runner.py", "nas/py.typed",
                   "supernet/supernet.py", "latency_luts/README.md",
                   "latency_luts/iphone12.json",
                   "latency_luts/iphone12.costmodel.json", "latency_luts/calibration/iphone12_published.csv"]:
        assert needed in names, needed
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True)
    env = {**os.environ, "PYTHONPATH": str(site)}
    code = ("import nas, sys; from nas.space import load_space; s = load_space('efficientformer'); "
            "assert 'site' in nas.__file__, nas.__file__; print(s.preset('l1').widths, load_space('tiny').name)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "(48, 96, 224, 448) tiny"
    # the version the wheel carries is the package's own (written once, in nas/__init__.py)
    import nas

    assert f"vit_latency_nas-{nas.__version__}-" in wheel.name
    # the shipped iPhone 12 table and the cost model's calibration data are found from the installed package
    code = ("from nas.latency import load_predictor; from nas.latency.costmodel.published import load_published, "
            "shipped_calibration_csv; p = load_predictor('iphone12'); assert 'site' in p.path, p.path; "
            "print(len(load_published(shipped_calibration_csv(), 'P2')), p.kind)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={**env, "NAS_LUT_DIR": str(tmp_path)},
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "21 estimated"


def test_every_install_hint_names_this_distribution_not_pypis_nas():
    """PyPI's `nas` is an unrelated project: `pip install 'nas[onnx]'` would install it."""
    import re

    offenders = [f"{path.relative_to(ROOT)}:{n}" for folder in ("nas", "supernet", "docs") for path in
                 (ROOT / folder).rglob("*.[pm][yd]") for n, line in enumerate(path.read_text().splitlines(), 1)
                 if re.search(r"pip install[^\n]*'nas\[|pip install nas\b", line)]
    offenders += [f"README.md:{n}" for n, line in enumerate((ROOT / "README.md").read_text().splitlines(), 1)
                  if re.search(r"pip install[^\n]*'nas\[|pip install nas\b", line)]
    assert not offenders
    from nas import install_hint

    assert install_hint("onnx") == "pip install 'vit-latency-nas[onnx]'"
