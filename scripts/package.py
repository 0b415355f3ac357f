"""Build one deployable zip per Cloud Function: `dist/<function>.zip`.

Each zip holds the function's `main.py`, the `ion` package (copied from shared/ion, with its
data files, without caches) and a `requirements.txt` that pins, with `==`, every distribution
the function needs, transitive ones included, at the versions installed in the running
environment (`.venv`), evaluated for the Cloud Functions runtime (python312 on Linux). Cloud
Functions installs that file itself when it builds the function.

The zip is deterministic (sorted entries, fixed timestamps and permissions), so its SHA-256
changes only when its content does; Terraform names the uploaded source object after it.

Usage: python scripts/package.py [--out dist] [FUNCTION ...]
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import importlib.metadata as metadata
import sys
import tomllib
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from ion.adapters import embeddings

ROOT = Path(__file__).resolve().parent.parent
ION_SRC = ROOT / "shared" / "ion"
MODEL_FOLDER = embeddings.MODEL_STATE_DIR.relative_to(ION_SRC).as_posix()

# The runtime Terraform deploys (modules/function `runtime = "python312"`): markers are
# evaluated for it, not for the interpreter running this script.
TARGET_ENV = {
    "python_version": "3.12",
    "python_full_version": "3.12.0",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "os_name": "posix",
    "platform_machine": "x86_64",
}

# Fixed zip metadata: 1980-01-01 is the earliest date the zip format can hold.
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
FILE_MODE = 0o644 << 16


@dataclass(frozen=True)
class Function:
    """One deployable source: its folder, entry points (name -> signature) and extra needs."""

    source: str
    entry_points: dict[str, str]
    # Distributions beyond the `ion` core (pyproject [project.dependencies]).
    extras: tuple[str, ...] = field(default_factory=tuple)
    # Whether it loads the embedding model: its zip then carries the model prepared for a
    # fast start and a small memory (ion.adapters.embeddings).
    embeds: bool = True


# What each function needs in production. Secrets reach the functions as secret environment
# variables (ION_SECRETS_BACKEND=env, see docs/deploy.md), so no Secret Manager client is
# shipped. Every function logs Cloud Logging's structured JSON (ION_LOG_FORMAT=json), written
# by `ion.adapters.cloud_logging` with no client library. persona_route answers no persona (ION_LLM_PROVIDER=offline) but its routing judge
# calls Gemini (ION_ROUTING_JUDGE=gemini), so it ships google-genai too.
# tests/infra/test_terraform_contract.py checks these against the Terraform configuration.
FUNCTIONS: dict[str, Function] = {
    "chat": Function(
        source="functions/chat",
        entry_points={"chat": "http"},
        extras=(
            "google-cloud-firestore",
            "google-cloud-pubsub",
            "google-genai",
        ),
    ),
    "persona_route": Function(
        source="functions/persona_route",
        entry_points={"persona_route": "http", "persona_events": "cloudevent"},
        extras=(
            "google-cloud-firestore",
            "google-cloud-pubsub",
            "google-genai",
        ),
    ),
    "backup": Function(
        source="functions/backup",
        entry_points={"backup": "cloudevent"},
        # google-cloud-firestore ships the admin client (firestore_admin_v1) for exports.
        extras=("google-cloud-firestore",),
        embeds=False,
    ),
}


def core_requirements() -> list[str]:
    """The `ion` package's own dependencies, as declared in pyproject.toml."""
    with (ROOT / "pyproject.toml").open("rb") as handle:
        project = tomllib.load(handle)["project"]
    return list(project["dependencies"])


def top_level_requirements(function: Function) -> list[Requirement]:
    return [Requirement(text) for text in (*core_requirements(), *function.extras)]


def _applies(requirement: Requirement, extras: Iterable[str]) -> bool:
    if requirement.marker is None:
        return True
    marker: Marker = requirement.marker
    wanted = list(extras) or [""]
    return any(marker.evaluate({**TARGET_ENV, "extra": extra}) for extra in wanted)


def lock(requirements: Iterable[Requirement]) -> dict[str, str]:
    """Pin the transitive closure of `requirements` to the installed versions.

    Returns {distribution name as installed: version}. Raises SystemExit naming a
    distribution the runtime needs that is not installed here (so it cannot be pinned).
    """
    pinned: dict[str, str] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    pending: list[tuple[Requirement, frozenset[str]]] = [
        (requirement, frozenset()) for requirement in requirements
    ]
    while pending:
        requirement, parent_extras = pending.pop()
        if not _applies(requirement, parent_extras):
            continue
        key = canonicalize_name(requirement.name)
        extras = frozenset(requirement.extras)
        if (key, extras) in seen:
            continue
        seen.add((key, extras))
        try:
            dist = metadata.distribution(requirement.name)
        except metadata.PackageNotFoundError:
            raise SystemExit(
                f"{requirement.name} is needed by the runtime but not installed in this"
                " environment: install it (make setup) so it can be pinned"
            ) from None
        version = dist.version
        if not requirement.specifier.contains(version, prereleases=True):
            raise SystemExit(f"installed {requirement.name}=={version} violates {requirement}")
        pinned[dist.metadata["Name"]] = version
        for text in dist.requires or ():
            pending.append((Requirement(text), extras))
    return pinned


def requirements_txt(name: str, function: Function) -> str:
    top = top_level_requirements(function)
    pinned = lock(top)
    by_key = {canonicalize_name(dist): dist for dist in pinned}
    lines = [
        f"# {name}: generated by scripts/package.py from pyproject.toml and the installed",
        "# versions; every distribution the function needs is pinned (transitive ones too).",
    ]
    # Keep extras on the top-level lines (PyJWT[crypto]) so the intent stays readable.
    extras_of = {canonicalize_name(r.name): sorted(r.extras) for r in top if r.extras}
    for key in sorted(by_key):
        dist = by_key[key]
        extras = extras_of.get(key)
        label = f"{dist}[{','.join(extras)}]" if extras else dist
        lines.append(f"{label}=={pinned[dist]}")
    return "\n".join(lines) + "\n"


def _ion_files() -> Iterator[tuple[str, Path]]:
    for path in sorted(ION_SRC.rglob("*")):
        if not path.is_file():
            continue
        relative = path.relative_to(ION_SRC)
        if "__pycache__" in relative.parts or path.suffix in {".pyc", ".pyo"}:
            continue
        yield f"ion/{relative.as_posix()}", path


@functools.cache
def _model_files() -> dict[str, bytes]:
    """Prepared once per run, shared by the functions that embed."""
    return embeddings.packaged_model_files()


def _write_entry(archive: zipfile.ZipFile, arcname: str, data: bytes) -> None:
    info = zipfile.ZipInfo(arcname, date_time=ZIP_DATE)
    info.external_attr = FILE_MODE
    info.compress_type = zipfile.ZIP_DEFLATED
    # The prepared model (85 MB) at level 1: 1.4 s instead of 20 s, for 3 MB more.
    level = 1 if arcname.startswith(f"ion/{MODEL_FOLDER}/") else 9
    archive.writestr(info, data, compresslevel=level)


def build(name: str, out_dir: Path) -> Path:
    function = FUNCTIONS[name]
    main_py = ROOT / function.source / "main.py"
    if not main_py.is_file():
        raise SystemExit(f"{name}: {main_py.relative_to(ROOT)} does not exist")
    entries: dict[str, bytes] = {
        "main.py": main_py.read_bytes(),
        "requirements.txt": requirements_txt(name, function).encode(),
    }
    for arcname, path in _ion_files():
        entries[arcname] = path.read_bytes()
    if function.embeds:
        for file_name, data in _model_files().items():
            entries[f"ion/{MODEL_FOLDER}/{file_name}"] = data
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{name}.zip"
    partial = target.with_suffix(".zip.partial")
    with zipfile.ZipFile(partial, "w") as archive:
        for arcname in sorted(entries):
            _write_entry(archive, arcname, entries[arcname])
    partial.replace(target)
    return target


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("functions", nargs="*", metavar="FUNCTION", help=", ".join(FUNCTIONS))
    parser.add_argument("--out", type=Path, default=ROOT / "dist")
    args = parser.parse_args(argv)
    names: list[str] = args.functions or list(FUNCTIONS)
    unknown = sorted(set(names) - set(FUNCTIONS))
    if unknown:
        parser.error(
            f"unknown function(s) {', '.join(unknown)}; choose from {', '.join(FUNCTIONS)}"
        )
    for name in names:
        path = build(name, args.out)
        print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}  {sha256(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
