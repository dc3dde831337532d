"""The package's shape: no import circles, no reach into other modules' private names, layers
that import only downwards, a torch-free API face, and defaults defined once."""

from __future__ import annotations

import ast
import inspect
import re
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

import neurocodec
from neurocodec import api, settings
from neurocodec.cli import main

PACKAGE = Path(neurocodec.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(name: str) -> list[tuple[str, list[str]]]:
    """(module imported, names taken from it) for every import in a module, module level or inside functions."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names if a.name.startswith("neurocodec")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("neurocodec"):
                continue
            for a in node.names:  # `from pkg import module` imports the module
                sub = f"{target}.{a.name}"
                out.append((sub, []) if sub in MODULES else (target, [a.name]))
    return out


def _graph() -> dict[str, set[str]]:
    graph = {}
    for name in MODULES:
        graph[name] = set()
        for target, _ in _imports(name):
            while target not in MODULES:  # `import neurocodec.x.y` names the deepest module there is
                target = target.rpartition(".")[0]
            if target != name:
                graph[name].add(target)
    return graph


def test_no_import_circles():
    """Every import counts, at module level or inside a function (a lazy import still makes a circle)."""
    graph, state, stack = _graph(), {}, []

    def visit(m: str) -> None:
        state[m] = "open"
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == "open":
                raise AssertionError("import circle: " + " -> ".join(stack[stack.index(n) :] + [n]))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert len(graph) > 30  # the walk saw the package


def test_no_module_takes_another_modules_private_names():
    for name in MODULES:
        for target, names in _imports(name):
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            assert not private, f"{name} imports {private} from {target}"


def _reaches(name: str) -> set[str]:
    graph, seen, todo = _graph(), set(), [name]
    while todo:
        for n in graph[todo.pop()] - seen:
            seen.add(n)
            todo.append(n)
    return seen


FOLDERS = ("entropy", "autoencoder", "fitted", "cli", "bench", "training")
FACE = {"neurocodec", "neurocodec.__main__", "neurocodec.pil_plugin"}
# Which groups each group may import (itself always): the layers, bottom to top.
ALLOWED = {
    "base": set(),  # errors, settings, format, imageio, ratecontrol, ...: the shared ground floor
    "entropy": {"base"},  # exact coding, for every codec family
    "autoencoder": {"base", "entropy"},  # a codec family: knows nothing of its users
    "fitted": {"base", "entropy"},  # the other family (per-image fitted): nor of the autoencoder
    "api": {"base", "entropy", "autoencoder", "fitted"},
    "face": {"base", "api", "cli"},  # import neurocodec, the Pillow plugin, python -m neurocodec
    "training": {"base", "entropy", "autoencoder"},
    "bench": {"base", "face", "api", "autoencoder"},
    "cli": {"base", "face", "api", "autoencoder", "bench", "training"},
}


def _group(module: str) -> str:
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in FOLDERS:
        return parts[1]
    if module in FACE:
        return "face"
    return "api" if module == "neurocodec.api" else "base"


def test_layers_import_only_downwards():
    for name, deps in _graph().items():
        for dep in deps:
            src, dst = _group(name), _group(dep)
            assert dst == src or dst in ALLOWED[src], f"{name} ({src}) imports {dep} ({dst})"
    # The codec core does not import its own strategies: the API runs them.
    core = _reaches("neurocodec.autoencoder.codec")
    assert "neurocodec.autoencoder.refine" not in core and "neurocodec.ratecontrol" not in core


def test_every_package_is_in_the_wheel():
    """pyproject lists its packages by hand (weights/ rides along as package data): none may be missing."""
    import tomllib

    listed = set(tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    packages = {_module_name(p) for p in PACKAGE.rglob("__init__.py")}
    assert packages <= listed, f"add {sorted(packages - listed)} to pyproject's packages"


def test_the_api_face_and_the_cli_import_no_torch():
    code = (
        "import sys, neurocodec, neurocodec.cli, neurocodec.settings, neurocodec.ratecontrol, neurocodec.bench\n"
        "import neurocodec.autoencoder.modelfiles\n"
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    r = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_cli_help_and_api_agree_on_defaults_and_ranges():
    help_text = " ".join(CliRunner().invoke(main, ["encode", "--help"], terminal_width=400).output.split())
    quality = re.search(r"--quality FLOAT RANGE .*?\[default: ([0-9.]+); 0<=x<=100\]", help_text)
    effort = re.search(r"--effort INTEGER RANGE .*?\[default: ([0-9]+); 0<=x<=([0-9]+)\]", help_text)
    assert quality and effort, help_text
    assert float(quality.group(1)) == settings.DEFAULT_QUALITY
    assert int(effort.group(1)) == settings.DEFAULT_EFFORT and int(effort.group(2)) == settings.MAX_EFFORT
    assert ", ".join(map(str, settings.REFINE_STEPS[1:])) + " gradient steps" in help_text
    assert f"(quality {settings.DEFAULT_QUALITY:g})" in CliRunner().invoke(main, ["--help"]).output
    for fn in (api.encode, neurocodec.encode):
        params = inspect.signature(fn).parameters
        assert params["quality"].default == settings.DEFAULT_QUALITY
    assert inspect.signature(api.encode).parameters["effort"].default == settings.DEFAULT_EFFORT
    assert neurocodec.DEFAULT_QUALITY == settings.DEFAULT_QUALITY and neurocodec.MAX_EFFORT == settings.MAX_EFFORT
