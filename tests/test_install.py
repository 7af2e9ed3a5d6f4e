"""shopstream installed as a user installs it into their own Airflow: `pip install .` into a fresh
virtualenv that already holds the pinned Airflow and the other dependencies (here: the project's
environment, put on the new one's path), then the `shopstream` command."""

from __future__ import annotations

import os
import shutil
import subprocess
import sysconfig
import venv
from pathlib import Path

import pytest

from shopstream.config import REPO_ROOT

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The new virtualenv's bin folder, shopstream installed into it from a copy of the sources."""
    home = tmp_path_factory.mktemp("install")
    source = home / "source"
    shutil.copytree(
        REPO_ROOT / "shopstream", source / "shopstream", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(REPO_ROOT / "pyproject.toml", source)
    venv.EnvBuilder(with_pip=True).create(home / "venv")
    bin_dir = home / "venv" / "bin"
    site = run(bin_dir / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout
    # "Already holds the pinned Airflow": the project's packages, seen by the new environment.
    (Path(site.strip()) / "existing-airflow.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run(bin_dir / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(source))
    return bin_dir


def run(*command, env: dict | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=300,
                            env={**os.environ, **(env or {})}, cwd="/")  # fmt: skip
    assert result.returncode == 0, f"{command}: {result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result


def test_pip_install_gives_the_shopstream_command_with_its_subcommands(installed):
    shown = run(installed / "shopstream", "--help").stdout
    for command in ("ingest", "rdd-etl", "df-etl", "validate", "report", "lake", "runs"):
        assert f"\n  {command} " in shown, shown


def test_the_installed_command_runs_the_installed_package_with_its_files_from_shopstream_home(installed):
    where = run(installed / "python", "-c", "import shopstream.cli; print(shopstream.cli.__file__)").stdout
    assert where.startswith(str(installed.parent)), "the installed copy, not the checkout"
    topic = run(installed / "shopstream", "topic", "--help", env={"SHOPSTREAM_HOME": str(REPO_ROOT)}).stdout
    assert topic.startswith("usage: shopstream topic")


def test_an_installed_package_without_its_home_says_what_to_set(installed):
    env = {k: v for k, v in os.environ.items() if k != "SHOPSTREAM_HOME"}
    result = subprocess.run([str(installed / "shopstream"), "topic", "--help"], capture_output=True,
                            text=True, timeout=120, cwd="/", env=env)  # fmt: skip
    assert result.returncode != 0
    assert "SHOPSTREAM_HOME" in result.stderr and "Deploy into your Airflow" in result.stderr
