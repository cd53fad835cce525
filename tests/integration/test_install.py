"""The package installs on its own: its wheel, built from pyproject.toml, installed into a fresh virtualenv with
requirements.txt as constraints (no --no-deps), imports every module of batchml and passes `pip check`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


# nothing of the repository's own environment may leak into the fresh one (an editable checkout on PYTHONPATH would
# let pip think batchml is installed already, and let the probe import the checkout)
CLEAN_ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}


def _run(*cmd, cwd=None, timeout=1800) -> subprocess.CompletedProcess:
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=CLEAN_ENV)
    assert done.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.mark.install
def test_the_wheel_installs_into_a_fresh_virtualenv_and_imports_every_module(tmp_path):
    wheels = tmp_path / "dist"
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", wheels, REPO)
    (wheel,) = wheels.glob("batchml-*.whl")
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    # the full pyspark must win over pyspark-client (they share a folder; see requirements.txt)
    _run(python, "-m", "pip", "install", "--disable-pip-version-check", "-q", "-c", REPO / "requirements.txt",
         f"{wheel}[postgres,s3]")
    spark = [line for line in (REPO / "requirements.txt").read_text().splitlines() if line.startswith("pyspark==")]
    _run(python, "-m", "pip", "install", "--disable-pip-version-check", "-q", "--no-deps", "--force-reinstall",
         *spark)
    _run(python, "-m", "pip", "check")
    probe = (
        "import importlib, pkgutil, batchml\n"
        "names = sorted(m.name for m in pkgutil.walk_packages(batchml.__path__, 'batchml.')\n"
        "               if not m.name.endswith('__main__'))  # importing a __main__ runs its command\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "import pathlib, sys\n"
        "home = pathlib.Path(batchml.__file__).parent\n"
        "assert sys.prefix in str(home), f'imported {home}, not the installed copy'\n"
        "assert (home / 'templates' / 'model_card.html.j2').exists()\n"
        "print(len(names))\n"
    )
    done = _run(python, "-c", probe, cwd=tmp_path)  # not the repo: the installed copy is imported
    assert int(done.stdout.strip().splitlines()[-1]) >= 30
    # and the installed package finds the specs and runs its command line
    done = _run(venv / "bin" / "batchml", "--help", cwd=tmp_path)
    assert "ingest" in done.stdout
