"""The shape of the package: no import circle (function-level imports included), no module over 400 lines,
and every list of names read from its registry (CLI choices, schema enums, Snakemake rules, the launcher)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import click
import pytest

from dplase.config.loading import REGISTRY_KEYWORD, load_schema
from dplase.config.registries import REGISTRIES, registry

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "dplase"
MAX_LINES = 400


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def runtime_nodes(tree: ast.AST):
    """Every node that can run: all of the tree but ``if TYPE_CHECKING:`` blocks (type hints only)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (n for child in node.orelse for n in [child, *runtime_nodes(child)])
            continue
        yield node
        yield from runtime_nodes(node)


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """dplase modules a file imports anywhere it can run (module level and inside functions)."""
    return imported_modules_at(path, ROOT, known)


def imported_modules_at(path: Path, root: Path, known: set[str]) -> set[str]:
    this = module_name(path, root)
    package = this if path.name == "__init__.py" else this.rpartition(".")[0]
    found: set[str] = set()
    for node in runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            # `from pkg import sub` imports the submodule pkg.sub when there is one
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        found |= {n for n in names if n in known}
    return found - {this}


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imported_modules(path, set(mods)) for name, path in mods.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_cycle_finder_finds_a_planted_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_import_graph_sees_function_level_imports_and_skips_type_checking_blocks(tmp_path):
    source = tmp_path / "dplase" / "mod.py"
    source.parent.mkdir()
    source.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import dplase.a\n"
                      "def f():\n    from dplase import b\n    from .c import x\n")
    known = {"dplase.a", "dplase.b", "dplase.c", "dplase.mod"}
    assert imported_modules_at(source, tmp_path, known) == {"dplase.b", "dplase.c"}
    assert "dplase.methods" in import_graph()["dplase.jobs"]  # a function-level import in the real package


def test_no_import_circle_in_dplase():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_no_module_over_400_lines():
    long = {name: n for name, path in modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, long


# ------------------------------------------------------------------------------------------- registries


@pytest.mark.parametrize("kind", list(REGISTRIES))
def test_every_registered_target_imports(kind):
    reg = registry(kind)
    assert len(reg) > 0 and reg.kind == kind
    for name in reg:
        assert reg[name].load() is not None, name


def test_unknown_names_are_refused_with_the_registered_ones():
    methods = registry("method")
    with pytest.raises(ValueError, match="unknown method 'pca'; choose one of dplase, sefa"):
        methods.load("pca")


def schema_nodes(node, path=""):
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from schema_nodes(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from schema_nodes(value, f"{path}/{i}")


def test_schema_enums_come_from_the_registries():
    from dplase.metrics.fid import EXTRACTORS
    from dplase.priors import PRIOR_NAMES

    schema = load_schema()
    marked = {path: node for path, node in schema_nodes(schema) if REGISTRY_KEYWORD in node}
    kinds = {node[REGISTRY_KEYWORD] for node in marked.values()}
    assert {"method", "metric", "generator family"} <= kinds
    for path, node in marked.items():
        nullable = "null" in (node["type"] if isinstance(node.get("type"), list) else [])
        assert node["enum"] == [*registry(node[REGISTRY_KEYWORD]), *([None] if nullable else [])], path
    literal = {path: node["enum"] for path, node in schema_nodes(schema) if "enum" in node and path not in marked}
    assert literal[next(p for p in literal if p.endswith("/prior"))] == list(PRIOR_NAMES)
    assert literal[next(p for p in literal if p.endswith("/extractor"))] == list(EXTRACTORS)


def choices(command: click.Command, param: str) -> list[str]:
    option = next(p for p in command.params if p.name == param)
    assert isinstance(option.type, click.Choice), param
    return list(option.type.choices)


def test_cli_choices_come_from_the_registries():
    from dplase.cli import main
    from dplase.launch.plan import LAUNCH_STAGES
    from dplase.priors import PRIOR_NAMES

    ctx = click.Context(main)
    command = lambda name: main.get_command(ctx, name)  # noqa: E731
    assert choices(command("discover"), "method") == list(registry("method"))
    assert choices(command("discover"), "walk") == list(registry("walk"))
    assert choices(command("traverse"), "walk") == list(registry("walk"))
    assert choices(command("plot"), "figures") == [*registry("figure"), "all"]
    assert choices(command("sweep"), "stages") == list(LAUNCH_STAGES)
    assert choices(command("train-gan"), "prior") == list(PRIOR_NAMES)
    help_text = command("train-gan").params[0].help
    assert all(name in help_text for name in registry("dataset"))


def test_snakemake_rules_are_the_stage_table():
    from dplase.stages import STAGES

    rules = set()
    for path in (ROOT / "workflow" / "rules").glob("*.smk"):
        rules |= set(re.findall(r"^rule (\w+):", path.read_text(), flags=re.MULTILINE))
    assert set(STAGES) <= rules
    assert rules - set(STAGES) == {"plot_figure"}  # the figures' rule reads the figure registry instead


def test_launcher_waves_follow_the_stage_dependencies():
    from dplase.launch.plan import WAVES

    assert WAVES == (("train_gan", "train_factor_predictor"), ("discover_directions",), ("evaluate_walks",))
