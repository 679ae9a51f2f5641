"""The compiled per-record path: which modules mypyc compiles, whether a build is current,
and how to build it.

The detection engine, its detectors and the call record are plain typed Python, and they
stay the reference. ``make native`` (part of ``make install``) compiles exactly those
modules with mypyc into ``_native/`` inside the package, beside the sources rather than
over them, with a manifest of the sources' SHA-256. When a package that holds compiled
modules is imported, it puts the build first on its ``__path__`` only if every source
still matches the manifest. Edit ``engine.py`` and tollguard runs the pure Python again,
with one warning, until ``make native`` rebuilds: a stale build is never used.
``TOLLGUARD_PURE=1`` forces the pure Python (the equivalence tests run both).

    python -m tollguard.native build     # compile (needs a C compiler and mypy)
    python -m tollguard.native status    # is the compiled path in use, and if not, why
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import json
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import MutableSequence
from pathlib import Path
from typing import Any

# The per-record path, as paths below the ``src`` folder. Only what the engine runs for
# every record: calibration, priors files and the CLI gain nothing from compiling.
NATIVE_MODULES = (
    "tollguard/cdr/model.py",
    "tollguard/cdr/records.py",
    "tollguard/detect/alert.py",
    "tollguard/detect/base.py",
    "tollguard/detect/books.py",
    "tollguard/detect/clock.py",
    "tollguard/detect/concurrency.py",
    "tollguard/detect/destination.py",
    "tollguard/detect/deviation.py",
    "tollguard/detect/engine.py",
    "tollguard/detect/limits.py",
    "tollguard/detect/population.py",
    "tollguard/detect/pumping.py",
    "tollguard/detect/sequential.py",
    "tollguard/detect/signature.py",
    "tollguard/detect/stats.py",
    "tollguard/detect/unusual_hours.py",
    "tollguard/detect/wangiri.py",
)
GROUP = "tollguard_native"  # the shared library is the top-level module GROUP + "__mypyc"
MANIFEST = "manifest.json"
PURE_ENV = "TOLLGUARD_PURE"

_PACKAGE = Path(__file__).resolve().parent
_decision: bool | None = None


def native_dir(package: Path = _PACKAGE) -> Path:
    return package / "_native"


def _python_tag() -> str:
    return f"{sys.implementation.cache_tag}{importlib.machinery.EXTENSION_SUFFIXES[0]}"


def _source_hashes(package: Path) -> dict[str, str]:
    src = package.parent
    return {rel: hashlib.sha256((src / rel).read_bytes()).hexdigest() for rel in NATIVE_MODULES}


def problems(package: Path = _PACKAGE) -> list[str]:
    """Why the compiled build in ``package/_native`` cannot be used ([] when it can)."""
    folder = native_dir(package)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        return ["not built (run `make native`)"]
    except (OSError, ValueError) as exc:
        return [f"{folder / MANIFEST} is unreadable ({exc}); run `make native`"]
    if manifest.get("python") != _python_tag():
        return [f"built for {manifest.get('python')}, this is {_python_tag()}; run `make native`"]
    built = manifest.get("sources", {})
    if sorted(built) != sorted(NATIVE_MODULES):
        return ["the list of compiled modules changed; run `make native`"]
    current = _source_hashes(package)
    changed = [rel for rel in NATIVE_MODULES if built[rel] != current[rel]]
    return [f"{rel} changed since the build; run `make native`" for rel in changed]


def active() -> bool:
    """Use the compiled modules in this process? Decided once, on first import."""
    global _decision
    if _decision is None:
        _decision = _decide()
    return _decision


def _forced_pure() -> bool:
    return os.environ.get(PURE_ENV, "") not in ("", "0")


def _decide() -> bool:
    if _forced_pure():
        return False
    folder = native_dir()
    if not folder.exists():
        return False  # never built (no compiler, or `make native` not run): pure Python
    reasons = problems()
    if reasons:
        warnings.warn(
            "tollguard: not using the compiled detection path: " + "; ".join(reasons),
            RuntimeWarning,
            stacklevel=3,
        )
        return False
    sys.path.append(str(folder))  # the shared library of the compiled modules
    return True


def extend(package_path: MutableSequence[str], package: str) -> None:
    """Called first thing in a package holding compiled modules: search the build first."""
    if active():
        package_path.insert(0, str(native_dir().joinpath(*package.split("."))))


def compiled(module: Any) -> bool:
    """Is this module object a compiled extension (rather than its .py source)?"""
    return str(getattr(module, "__file__", "")).endswith(
        tuple(importlib.machinery.EXTENSION_SUFFIXES)
    )


def build(package: Path = _PACKAGE, jobs: int = 2, quiet: bool = True) -> Path:
    """Compile ``NATIVE_MODULES`` into ``package/_native`` (replaced only on success)."""
    from mypyc.build import mypycify
    from setuptools import setup  # type: ignore[import-untyped,unused-ignore]

    folder = native_dir(package)
    hashes = _source_hashes(package)  # of the sources as they are when the build starts
    with tempfile.TemporaryDirectory(prefix="tollguard-native-") as tmp:
        work = Path(tmp) / "src"
        # a copy, so the build never writes next to the sources, and a folder without
        # this project's pyproject.toml for setuptools to read
        shutil.copytree(
            package,
            work / "tollguard",
            ignore=shutil.ignore_patterns("_native", "__pycache__", "*.so"),
        )
        cwd = os.getcwd()
        os.chdir(work)
        try:
            extensions = mypycify(
                list(NATIVE_MODULES), opt_level="3", multi_file=True, group_name=GROUP
            )
            args = ["build_ext", "--inplace", "--parallel", str(jobs)]
            setup(
                name="tollguard-native",
                ext_modules=extensions,
                script_args=["--quiet", *args] if quiet else args,
            )
        finally:
            os.chdir(cwd)
        staged = folder.with_name("_native.new")
        shutil.rmtree(staged, ignore_errors=True)
        suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
        libs = [*work.glob(f"{GROUP}__mypyc*{suffix}"), *(work / "tollguard").rglob(f"*{suffix}")]
        for lib in libs:  # the shared library and one module per compiled source
            target = staged / lib.relative_to(work)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(lib, target)
        manifest = {"python": _python_tag(), "group": GROUP, "sources": hashes}
        (staged / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        shutil.rmtree(folder, ignore_errors=True)
        staged.rename(folder)
    return folder


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["build"]:
        if shutil.which(os.environ.get("CC", "cc")) is None:
            print("tollguard: no C compiler (cc) found; tollguard runs as pure Python")
            return 1
        folder = build(quiet="-v" not in args)
        print(f"tollguard: compiled {len(NATIVE_MODULES)} modules into {folder}")
        return 0
    if args[:1] == ["status"]:
        reasons = problems()
        state = {"compiled": not reasons and not _forced_pure()}
        if "--json" in args:
            print(json.dumps({**state, "problems": reasons, "modules": list(NATIVE_MODULES)}))
        elif state["compiled"]:
            print(f"compiled: {len(NATIVE_MODULES)} modules from {native_dir()}")
        else:
            print("pure Python: " + ("; ".join(reasons) or f"{PURE_ENV} is set"))
        return 0
    print("usage: python -m tollguard.native build [-v] | status [--json]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
