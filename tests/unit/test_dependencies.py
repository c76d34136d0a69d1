"""What the shipped code imports is installed by the extras the image installs.

The image installs `duckherd[all]` (operator and jobs), not `dev`: a module of `operator/` or
`jobs/` that imports a package only a test extra brings would fail in a pod, not in the tests.
"""

from __future__ import annotations

import ast
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, packages_distributions, requires
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = (ROOT / "operator", ROOT / "jobs")
IMAGE_EXTRAS = ("all",)


def _top_level_imports(roots: tuple[Path, ...]) -> dict[str, str]:
    """Absolute imports → one file importing them (inside functions too)."""
    found: dict[str, str] = {}
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    found.setdefault(name.split(".")[0], str(path.relative_to(ROOT)))
    return found


def _own_packages() -> set[str]:
    return {child.name for root in SHIPPED for child in root.iterdir() if child.is_dir()}


def _wanted(requirement: Requirement, extras: set[str]) -> bool:
    marker = requirement.marker
    return marker is None or any(marker.evaluate({"extra": e}) for e in extras or {""})


def _installed_closure(requirements: list[Requirement]) -> set[str]:
    """Every distribution these requirements install, following installed metadata."""
    seen: set[str] = set()
    pending = list(requirements)
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        key = f"{name}[{','.join(sorted(requirement.extras))}]"
        if key in seen:
            continue
        seen.add(key)
        try:
            declared = requires(requirement.name) or []
        except PackageNotFoundError:
            continue
        pending += [
            child for child in map(Requirement, declared) if _wanted(child, set(requirement.extras))
        ]
    return {key.partition("[")[0] for key in seen}


def _image_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras: dict[str, list[str]] = project["optional-dependencies"]
    own = canonicalize_name(project["name"])
    chosen, pending = set(), list(IMAGE_EXTRAS)
    while pending:  # `all = ["duckherd[operator,jobs]"]`: expand the project's own extras
        extra = pending.pop()
        chosen.add(extra)
        for text in extras[extra]:
            requirement = Requirement(text)
            if canonicalize_name(requirement.name) == own:
                pending += sorted(requirement.extras - chosen)
    requirements = [Requirement(text) for text in project["dependencies"]]
    for extra in sorted(chosen):
        requirements += [
            r for r in map(Requirement, extras[extra]) if canonicalize_name(r.name) != own
        ]
    return requirements


def test_shipped_code_imports_only_what_the_image_installs() -> None:
    installed = _installed_closure(_image_requirements())
    providers = packages_distributions()
    own = _own_packages()
    missing = sorted(
        f"{module} (imported by {where})"
        for module, where in _top_level_imports(SHIPPED).items()
        if module not in sys.stdlib_module_names
        and module not in own
        and not {canonicalize_name(d) for d in providers.get(module, [])} & installed
    )
    assert missing == [], "not installed by duckherd[all] (the image): " + ", ".join(missing)


def test_the_check_reference_engine_stays_out_of_the_image() -> None:
    installed = _installed_closure(_image_requirements())
    assert "duckdb-engine" not in installed
    assert "sqlalchemy" not in installed
