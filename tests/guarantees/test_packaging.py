"""The built wheel and sdist are complete, and the wheel works in a fresh virtual environment.

SLOW (10 to 15 s on two cores), but needs nothing beyond the ``test`` extra and no package
index: the build runs without isolation, on the setuptools and wheel the extra installs, and
the fresh venv sees b24batch's dependencies where this interpreter has them (a ``.pth`` line;
the wheel itself is installed with ``--no-index``). Run everything else with
``pytest --deselect tests/guarantees/test_packaging.py``. The build runs on a copy of the
source in a temporary directory, so no ``build/`` or ``*.egg-info`` is left in the work tree.
"""

from __future__ import annotations

import configparser
import email.parser
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("build")
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BIN = "Scripts" if sys.platform == "win32" else "bin"
# Never copied: what a build or an editable install leaves behind, and VCS/tool state.
LEFTOVERS = shutil.ignore_patterns(
    ".git", "build", "dist", "*.egg-info", "__pycache__", "*.py[cod]", ".*_cache", ".venv"
)
POINTERS = frozenset({"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "VIRTUAL_ENV"})
EXPECTED_ENTRY_POINTS = {
    "console_scripts": {"b24batch": "b24batch.cli:main"},
    "pytest11": {"b24batch": "b24batch.testing.pytest_plugin"},
}
# What the package index shows beside the name: where to read more, and what the package is.
EXPECTED_URLS = {"Documentation", "Source", "Changelog", "Issues"}
EXPECTED_CLASSIFIERS = {
    "Development Status :: 3 - Alpha",
    "Framework :: Pytest",  # the pytest11 entry point: FakePortal fixtures
    "Operating System :: OS Independent",
    "Topic :: Internet :: WWW/HTTP",
    "Topic :: Software Development :: Libraries :: Python Modules",
    "Typing :: Typed",
}
# What the test suite reads besides the package: tests (with benchmarks), docs, and .ci/run
# (test_readme.py compares it with the README).
SUITE = ("tests", "docs", ".ci/run")
SMOKE = """
import b24batch
missing = [name for name in b24batch.__all__ if not hasattr(b24batch, name)]
assert not missing, missing
from b24batch.testing import FakePortal
with FakePortal() as portal, b24batch.B24Hook.from_webhook_url(portal.webhook_url) as b24:
    task = portal.add_task(title="From the wheel")
    result = b24batch.BatchV3(b24).make([("tasks.task.get", {"id": task})])
    assert result.data[0]["item"]["title"] == "From the wheel", result
print(b24batch.__file__)
"""


def _git_files(*paths: str) -> list[str] | None:
    """The files git tracks or would track under ``paths``; None without a checkout at ROOT.

    None also when ROOT is an untracked folder inside some other repository (a ``git archive``
    export or an unpacked sdist placed in one), whose listing would say nothing about ROOT.
    """
    git = ["git", "-C", str(ROOT)]
    try:
        top = subprocess.run(
            [*git, "rev-parse", "--show-toplevel"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.strip()
        if Path(top).resolve() != ROOT:
            return None
        listed = subprocess.run(
            [*git, "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *paths],
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
    except (OSError, subprocess.SubprocessError):  # no git, or not a checkout (an sdist)
        return None
    # --cached also lists files deleted in the work tree
    return [name for name in listed.decode("utf-8").split("\0") if name and (ROOT / name).is_file()]


def _walked_files(*paths: str) -> list[str]:
    """The files under ``paths`` less LEFTOVERS, for a copy without git."""
    names: list[str] = []
    for path in paths:
        if (ROOT / path).is_file():
            names.append(path)
            continue
        for folder, dirs, files in os.walk(ROOT / path):
            dirs[:] = sorted(set(dirs) - LEFTOVERS(folder, dirs))
            for name in sorted(set(files) - LEFTOVERS(folder, files)):
                names.append((Path(folder) / name).relative_to(ROOT).as_posix())
    return names


def _copy_source(target: Path) -> None:
    """Copy the work tree to ``target``: the files git would track, or all but LEFTOVERS."""
    listed = _git_files()
    if listed is None:
        # target exists already (the caller made it): copy into it.
        shutil.copytree(ROOT, target, ignore=LEFTOVERS, dirs_exist_ok=True)
        return
    for name in listed:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target / name)


def _run(command: list[str | Path], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, (
        f"{command} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    )
    return done.stdout


def _clean_env() -> dict[str, str]:
    """The environment less what would point Python at this checkout or the current venv.

    PIP_* settings stay: an index mirror or a CA bundle may be what lets pip reach PyPI.
    """
    env = {name: value for name, value in os.environ.items() if name not in POINTERS}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", PYTHONNOUSERSITE="1")
    return env


def _see_dependencies(python: Path) -> None:
    """Let the venv of ``python`` import b24batch's dependencies from where this interpreter
    has them: a ``.pth`` line per directory, appended after the venv's own site-packages.

    Only the directories holding the dependencies are added, and a directory named in a
    ``.pth`` file has its own ``.pth`` files ignored, so an editable b24batch there stays out.
    """
    names = ("requests", "urllib3", "attrs", "cattrs", "idna", "certifi", "charset_normalizer")
    folders = dict.fromkeys(
        str(Path(spec.origin).parent.parent)
        for spec in map(importlib.util.find_spec, names)
        if spec is not None and spec.origin is not None
    )
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    (Path(site) / "b24batch-test-dependencies.pth").write_text("\n".join(folders) + "\n")


def test_wheel_and_sdist_build_and_the_wheel_runs_in_a_fresh_venv(tmp_path: Path) -> None:
    """Build both, check their contents, install the wheel in a new venv and run the demo."""
    before = {path.name for path in ROOT.iterdir()}
    source, dist, work = tmp_path / "src", tmp_path / "dist", tmp_path / "work"
    source.mkdir()
    work.mkdir()
    _copy_source(source)
    env = _clean_env()

    # No --sdist/--wheel: the wheel is built from the sdist, which proves the sdist is complete.
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", dist, source], work, env)

    [wheel] = dist.glob("b24batch-*.whl")
    [sdist] = dist.glob("b24batch-*.tar.gz")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        [entry_points] = [name for name in names if name.endswith(".dist-info/entry_points.txt")]
        parser = configparser.ConfigParser()
        parser.read_string(archive.read(entry_points).decode("utf-8"))
        [metadata_name] = [name for name in names if name.endswith(".dist-info/METADATA")]
        metadata = email.parser.Parser().parsestr(archive.read(metadata_name).decode("utf-8"))
    assert metadata["Description-Content-Type"] == "text/markdown"
    assert metadata.get_payload().startswith("# b24batch")  # the README, as the index shows it
    assert set(metadata.get_all("Classifier") or ()) >= EXPECTED_CLASSIFIERS
    urls = dict(line.split(", ", 1) for line in metadata.get_all("Project-URL") or ())
    assert set(urls) == EXPECTED_URLS, urls
    assert all(url.startswith("https://") for url in urls.values()), urls
    assert (metadata["Author"], metadata["License"]) == ("The b24batch authors", "MIT")
    assert "bitrix24" in metadata["Keywords"]
    assert {"b24batch/py.typed", "b24batch/testing/portal.py"} <= names
    assert "b24batch/testing/pytest_plugin.py" in names
    assert all(name.startswith(("b24batch/", "b24batch-")) for name in names), sorted(names)
    for section, entries in EXPECTED_ENTRY_POINTS.items():
        assert dict(parser[section]) == entries
    with tarfile.open(sdist) as archive:
        members = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {"LICENSE", "README.md", "setup.cfg", "pyproject.toml", "b24batch/py.typed"} <= members
    # Everything the test suite needs, so the README's test command runs from the sdist too.
    needed = _git_files(*SUITE) or _walked_files(*SUITE)
    assert {"tests/__init__.py", "tests/conftest.py", "docs/benchmarks.md"} <= set(needed)
    assert set(needed) - members == set()

    environment = tmp_path / "venv"
    venv.create(environment, with_pip=True)
    python = environment / BIN / "python"
    _see_dependencies(python)
    _run([python, "-m", "pip", "install", "--quiet", "--no-index", wheel], work, env)

    # Run from outside the checkout, so only the installed copy can be imported.
    imported = _run([python, "-c", SMOKE], work, env).strip()
    assert Path(imported).is_relative_to(environment), imported
    demo = _run([python, "-m", "b24batch", "demo"], work, env)
    assert "is_success=True" in demo
    assert "is_success=False" in demo  # the demo's failing batch is shown, not raised
    script = environment / BIN / ("b24batch.exe" if sys.platform == "win32" else "b24batch")
    assert "is_success=True" in _run([script, "demo"], work, env)

    left = {path.name for path in ROOT.iterdir()} - before
    assert not {name for name in left if name in ("build", "dist") or ".egg-info" in name}
