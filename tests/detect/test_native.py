"""The compiled per-record path (mypyc, ``tollguard.native``) against the pure Python it
is built from: the same alerts and enforcement byte for byte, a stale build never used,
and CI running the compiled path (``make test`` builds it)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import tollguard.cdr.model
import tollguard.detect.engine
from tollguard import native
from tollguard.detect.base import Settings, thresholds
from tollguard.sim import simulate

SRC = Path(native.__file__).resolve().parents[1]


def _env(pure: bool) -> dict[str, str]:
    return {**os.environ, native.PURE_ENV: "1" if pure else "0"}


def _tollguard(*args: str, pure: bool) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-c", "from tollguard.cli import main; main()", *args]
    return subprocess.run(cmd, env=_env(pure), capture_output=True, text=True, timeout=300)


def _built() -> bool:
    return not native.problems()


def test_ci_runs_the_compiled_path() -> None:
    if not os.environ.get("CI"):
        pytest.skip("outside CI the build is optional (no C compiler: pure Python)")
    assert _built(), native.problems()
    assert native.compiled(tollguard.detect.engine)
    assert native.compiled(tollguard.cdr.model)


@pytest.mark.parametrize(
    ("seed", "fmt", "enforce"),
    [(5, "asterisk", False), (5, "asterisk", True), (17, "freeswitch", True)],
)
def test_compiled_and_pure_give_the_same_alerts(
    tmp_path: Path, seed: int, fmt: str, enforce: bool
) -> None:
    if not _built():
        if os.environ.get("CI"):
            pytest.fail(f"the compiled path is not built in CI: {native.problems()}")
        pytest.skip(f"no compiled build to compare: {native.problems()}")
    sim = tmp_path / "sim"
    files = simulate(sim, ["all"], days=21, seed=seed, accounts=30, scale=0.01, fmt=fmt)
    outputs = {}
    for pure in (True, False):
        alerts = tmp_path / f"alerts-{pure}.jsonl"
        args = ["scan", str(files.files["cdr"]), "--policy", str(sim / "policy.toml")]
        args += ["--json", "--alerts-out", str(alerts)] + (["--enforce"] if enforce else [])
        res = _tollguard(*args, pure=pure)
        assert res.returncode in (0, 1), res.stderr  # 1: critical alerts were raised
        report = json.loads(res.stdout)
        outputs[pure] = (alerts.read_bytes(), report)
    status = _status(pure=False)
    assert status["compiled"] is True, status
    (pure_alerts, pure_report), (fast_alerts, fast_report) = outputs[True], outputs[False]
    assert pure_alerts.count(b"\n") >= 10  # every scenario raised its alerts
    assert fast_alerts == pure_alerts
    assert fast_report == pure_report


def _status(pure: bool) -> dict[str, object]:
    cmd = [sys.executable, "-m", "tollguard.native", "status", "--json"]
    out = subprocess.run(cmd, env=_env(pure), capture_output=True, text=True, check=True).stdout
    status: dict[str, object] = json.loads(out)
    return status


def _fake_package(tmp_path: Path) -> Path:
    """A copy of the compiled modules' sources with a manifest that matches them."""
    package = tmp_path / "src" / "tollguard"
    hashes = {}
    for rel in native.NATIVE_MODULES:
        target = tmp_path / "src" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(SRC / rel, target)
        hashes[rel] = hashlib.sha256(target.read_bytes()).hexdigest()
    folder = native.native_dir(package)
    folder.mkdir()
    manifest = {"python": native._python_tag(), "group": native.GROUP, "sources": hashes}
    (folder / native.MANIFEST).write_text(json.dumps(manifest))
    return package


def test_a_build_is_used_only_while_its_sources_match(tmp_path: Path) -> None:
    package = _fake_package(tmp_path)
    assert native.problems(package) == []
    engine = package / "detect" / "engine.py"
    engine.write_text(engine.read_text() + "\n# edited after the build\n")
    assert native.problems(package) == [
        "tollguard/detect/engine.py changed since the build; run `make native`"
    ]


def test_a_build_for_another_python_or_module_list_is_not_used(tmp_path: Path) -> None:
    package = _fake_package(tmp_path)
    path = native.native_dir(package) / native.MANIFEST
    manifest = json.loads(path.read_text())
    path.write_text(json.dumps({**manifest, "python": "cpython-39.so"}))
    (reason,) = native.problems(package)
    assert reason.startswith("built for cpython-39.so")
    del manifest["sources"]["tollguard/detect/stats.py"]
    path.write_text(json.dumps(manifest))
    assert native.problems(package) == ["the list of compiled modules changed; run `make native`"]
    path.write_text("{not json")
    (reason,) = native.problems(package)
    assert "unreadable" in reason
    path.unlink()
    assert native.problems(package) == ["not built (run `make native`)"]


def test_a_stale_build_falls_back_to_pure_python_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = _fake_package(tmp_path)
    monkeypatch.delenv(native.PURE_ENV, raising=False)
    folder = native.native_dir(package)
    monkeypatch.setattr(native, "native_dir", lambda: folder)
    monkeypatch.setattr(native, "problems", lambda: ["tollguard/detect/engine.py changed"])
    path_before = list(sys.path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert native._decide() is False
    assert sys.path == path_before
    (warning,) = caught
    assert "not using the compiled detection path" in str(warning.message)
    assert "engine.py changed" in str(warning.message)


def test_pure_is_forced_by_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(native.PURE_ENV, "1")
    assert native._decide() is False
    assert _status(pure=True)["compiled"] is False


def test_thresholds_are_written_the_same_whatever_their_stored_type() -> None:
    settings = Settings(
        enabled=True,
        report_only=False,
        warning={"calls": 20, "p": 1e-4, "off": float("inf")},
        critical={"calls": 60.0, "p": 1e-7},
        options={},
    )
    assert thresholds(settings, "calls") == {"warning": 20, "critical": 60}
    assert type(thresholds(settings, "calls")["critical"]) is int
    assert thresholds(settings, "p") == {"warning": 1e-4, "critical": 1e-7}
    # a threshold switched off with inf (TOML allows it) is written, not an error
    assert thresholds(settings, "off") == {"warning": float("inf"), "critical": None}


def test_make_rebuilds_when_any_compiled_source_changes_and_only_then() -> None:
    """The Makefile reads its list of compiled sources from NATIVE_MODULES."""
    root = SRC.parent
    if shutil.which("make") is None:
        pytest.fail("make is needed to run the Makefile's own checks")
    dump = subprocess.run(
        ["make", "-pn", "native"], cwd=root, capture_output=True, text=True, timeout=60
    ).stdout
    line = next(x for x in dump.splitlines() if x.startswith("NATIVE_SOURCES :="))
    listed = line.split(":=", 1)[1].split()
    assert listed == ["src/tollguard/native.py", *(f"src/{m}" for m in native.NATIVE_MODULES)]
