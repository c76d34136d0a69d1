"""Where the dbt project comes from, and turning a ConfigMap's flat keys back into a tree.

Order of precedence (first match wins):
1. `spec.transform.dbt.project.path` (relative paths resolve against the manifest's directory);
2. `spec.transform.dbt.project.configMap`, or any ConfigMap mounted at DBT_CONFIGMAP_MOUNT;
3. `$DUCKHERD_DBT_PROJECT` (the image sets it to the project baked in at /opt/duckherd/dbt);
4. the repository's `dbt/`, searched upward from the manifest's directory and the cwd.

ConfigMap keys cannot contain `/`, so a flat project writes `__` for `/`:
`models__staging__stg_salesforce__customers.sql`. jaffle-shop style file names contain `__`
themselves, so decoding has to decide where the directories end: a segment is a directory when
more segments follow and it holds neither `_` nor `.` (`models`, `staging`, `marts`, ...); the
file name starts at the first segment that does. A directory whose name contains `_` cannot be
expressed; `flatten_project` refuses such a project instead of producing keys that decode wrong.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from duckherd.api import DbtProject
from duckherd.contract import DBT_CONFIGMAP_MOUNT, ENV_DBT_CONFIGMAP_DIR, ENV_DBT_PROJECT
from duckherd.errors import PipelineError

PROJECT_FILE = "dbt_project.yml"
SEPARATOR = "__"
_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
# Generated or local-only content that never belongs in a flat project.
_SKIPPED_DIRS = frozenset({"target", "logs", "dbt_packages", ".git", "__pycache__"})
_SKIPPED_FILES = frozenset({".user.yml", "package-lock.yml"})


class DbtProjectError(PipelineError, ValueError):
    """The dbt project cannot be found or rebuilt; the message names the field or key."""


def configmap_mount(env: Mapping[str, str]) -> Path:
    return Path(env.get(ENV_DBT_CONFIGMAP_DIR) or DBT_CONFIGMAP_MOUNT)


def locate_project(
    project: DbtProject, *, manifest_dir: Path, env: Mapping[str, str], scratch: Path
) -> Path:
    """The directory holding dbt_project.yml; a ConfigMap project is rebuilt under scratch."""
    if project.path is not None:
        path = Path(project.path)
        if not path.is_absolute():
            path = manifest_dir / path
        return _require_project(path, "spec.transform.dbt.project.path")
    mount = configmap_mount(env)
    if project.configMap is not None or _is_mounted(mount):
        where = (
            f"spec.transform.dbt.project.configMap {project.configMap!r}"
            if project.configMap
            else f"the ConfigMap mounted at {mount}"
        )
        if not _is_mounted(mount):
            raise DbtProjectError(f"{where}: nothing is mounted at {mount}")
        return rebuild_flat_project(mount, scratch, where=where)
    if env.get(ENV_DBT_PROJECT):
        return _require_project(Path(env[ENV_DBT_PROJECT]), f"${ENV_DBT_PROJECT}")
    for start in (manifest_dir, Path.cwd()):
        found = _search_upward(start.resolve())
        if found is not None:
            return found
    raise DbtProjectError(
        "no dbt project: set spec.transform.dbt.project.path or configMap, or "
        f"${ENV_DBT_PROJECT}; no dbt/{PROJECT_FILE} above {manifest_dir} or the working directory"
    )


def _require_project(path: Path, where: str) -> Path:
    if not (path / PROJECT_FILE).is_file():
        raise DbtProjectError(f"{where}: {path} holds no {PROJECT_FILE}")
    return path.resolve()


def _is_mounted(mount: Path) -> bool:
    return mount.is_dir() and any(mount.iterdir())


def _search_upward(start: Path) -> Path | None:
    for directory in (start, *start.parents):
        candidate = directory / "dbt"
        if (candidate / PROJECT_FILE).is_file():
            return candidate
    return None


def decode_key(key: str) -> Path:
    """`models__staging__stg_x__y.sql` → `models/staging/stg_x__y.sql` (see the module doc)."""
    if not _KEY.fullmatch(key) or key.startswith(".") or ".." in key.split(SEPARATOR):
        raise DbtProjectError(f"ConfigMap key {key!r} is not a valid flat dbt project path")
    segments = key.split(SEPARATOR)
    directories: list[str] = []
    while len(segments) > 1 and segments[0] and not re.search(r"[_.]", segments[0]):
        directories.append(segments.pop(0))
    name = SEPARATOR.join(segments)
    if not name:
        raise DbtProjectError(f"ConfigMap key {key!r} names no file")
    return Path(*directories, name)


def encode_path(relative: Path) -> str:
    """The ConfigMap key for a project file; the inverse of decode_key."""
    *directories, name = relative.parts
    for directory in directories:
        if re.search(r"[_.]", directory) or not directory:
            raise DbtProjectError(
                f"{relative}: directory {directory!r} contains '_' or '.', which a flat "
                "(ConfigMap) dbt project cannot express"
            )
    key = SEPARATOR.join([*directories, name])
    if decode_key(key) != relative:
        raise DbtProjectError(f"{relative}: file name cannot be encoded as a ConfigMap key")
    return key


def rebuild_flat_project(mount: Path, scratch: Path, *, where: str) -> Path:
    """Write each mounted key to its decoded path in a directory named by the content.

    Naming it by the content keeps the project's path (part of its fingerprint) the same
    from run to run, so that a manifest parsed by an earlier run can be reused.
    """
    files = {
        decode_key(entry.name): entry.read_bytes()
        for entry in sorted(mount.iterdir())
        # A ConfigMap volume holds `..data` and `..<timestamp>` entries beside the keys.
        if not entry.name.startswith("..") and entry.is_file()
    }
    if Path(PROJECT_FILE) not in files:
        raise DbtProjectError(f"{where}: no key {PROJECT_FILE!r} (the project's root file)")
    digest = hashlib.sha256()
    for relative, content in sorted(files.items()):
        digest.update(str(relative).encode() + b"\0" + hashlib.sha256(content).digest())
    destination = scratch / f"duckherd-dbt-project-{digest.hexdigest()[:20]}"
    if (destination / PROJECT_FILE).is_file():
        return destination
    scratch.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".duckherd-dbt-project-", dir=scratch))
    for relative, content in files.items():
        (staging / relative).parent.mkdir(parents=True, exist_ok=True)
        (staging / relative).write_bytes(content)
    try:
        staging.rename(destination)
    except OSError:  # a concurrent run wrote the same content first
        shutil.rmtree(staging, ignore_errors=True)
    return destination


def project_files(root: Path) -> Iterator[Path]:
    """The project's own source files (relative), without generated output."""
    for directory, subdirectories, files in os.walk(root):
        subdirectories[:] = sorted(
            name for name in subdirectories if name not in _SKIPPED_DIRS and name[0] != "."
        )
        for name in sorted(files):
            if name in _SKIPPED_FILES or name.startswith("."):
                continue
            yield (Path(directory) / name).relative_to(root)


def flatten_project(root: Path) -> dict[str, str]:
    """A project as ConfigMap data: flat key → file text."""
    return {
        encode_path(relative): (root / relative).read_text() for relative in project_files(root)
    }
