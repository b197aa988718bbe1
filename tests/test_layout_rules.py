"""Rules of the package's layout (issues #12 and #20).

* The parts depend on each other one way, lowest first: ``core``, ``sampling``,
  ``data``, ``metrics``, ``model``, ``io``, ``callbacks``, ``bench``, ``cli``, and
  the command entry points at the top (``ddim_keras/train.py`` ...). A module
  imports only modules of its own part or of a lower one, and no import (at
  module level or inside a function) closes a circle.
* No library module imports a command: commands only parse, call and print.
* Every command has its entry point (``python -m ddim_keras.NAME``) and its module
  in ``cli/`` with ``build_parser`` and ``main``; the list is read from ``cli/``.
* No module is longer than :data:`MAX_LINES` lines.
* One list per fact: the dataset names are ``core.datasets.DATASETS`` (and
  ``tfds:NAME``), checked by ``check_dataset_name`` alone; the fields a resume may
  change are ``config.RESUME_MAY_CHANGE``.
"""

import ast
import collections
import importlib
import os

import pytest

import ddim_keras
from ddim_keras.core import config, datasets

PACKAGE_DIR = os.path.dirname(ddim_keras.__file__)
PARTS = ("core", "sampling", "data", "metrics", "model", "io", "callbacks", "bench", "cli")
#: Where the top-level modules that are not parts belong: the package's own __init__
#: re-exports the public names, the others are the commands' entry points.
ENTRY = len(PARTS)
MAX_LINES = 500
#: Shared modules of cli/ that are not commands.
CLI_SHARED = ("__init__", "args", "gan_args", "runner", "quiet", "progress")


def _modules():
    """{dotted module name: path} of every module of the package."""
    found = {}
    for folder, _, files in os.walk(PACKAGE_DIR):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                dotted = "ddim_keras." + os.path.relpath(path, PACKAGE_DIR)[:-3].replace(
                    os.sep, "."
                )
                found[dotted.removesuffix(".__init__")] = path
    return found


MODULES = _modules()
COMMANDS = sorted(
    name.rsplit(".", 1)[1]
    for name in MODULES
    if name.startswith("ddim_keras.cli.") and name.rsplit(".", 1)[1] not in CLI_SHARED
)


def _rank(module):
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in PARTS:
        return PARTS.index(parts[1])
    return ENTRY


def _imports(path):
    """(line, module) of every import of a package module in ``path`` (functions included)."""
    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read(), path)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            submodules = [f"{node.module}.{alias.name}" for alias in node.names]
            names = [name for name in submodules if name in MODULES] or [node.module]
        else:
            continue
        found += [(node.lineno, name) for name in names if name in MODULES]
    return found


def _graph():
    graph = collections.defaultdict(set)
    for module, path in MODULES.items():
        for _, imported in _imports(path):
            # A package's __init__ re-exporting its own modules is not a dependency.
            if imported != module and not imported.startswith(module + "."):
                graph[module].add(imported)
    return graph


def test_parts_depend_on_lower_parts_only():
    offenders = [
        f"{module} ({PARTS[_rank(module)] if _rank(module) < ENTRY else 'top'}) imports {imported}"
        for module, imports in _graph().items()
        for imported in imports
        if _rank(imported) > _rank(module) and imported != "ddim_keras"
    ]
    assert not offenders, "imports against the direction of the parts:\n" + "\n".join(offenders)


def _circles(graph):
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(module):
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for other in graph.get(module, ()):
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in on_stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(set(graph) | {other for others in graph.values() for other in others}):
        if module not in index:
            visit(module)
    return found


def test_no_import_circle():
    assert _circles(_graph()) == []


def test_the_circle_finder_finds_a_circle():
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_library_module_imports_a_command():
    commands = {f"ddim_keras.cli.{name}" for name in COMMANDS} | {
        f"ddim_keras.{name}" for name in COMMANDS
    }
    offenders = [
        f"{module}:{line} imports {imported}"
        for module, path in MODULES.items()
        if _rank(module) < PARTS.index("cli")
        for line, imported in _imports(path)
        if imported in commands
    ]
    assert not offenders, "\n".join(offenders)


def test_every_command_has_an_entry_point_and_a_parser():
    assert {
        "train",
        "generate",
        "evaluate",
        "sweep",
        "report",
        "benchmark",
        "sampler_error",
        "shapes_classifier",
    } <= set(COMMANDS)
    for name in COMMANDS:
        assert f"ddim_keras.{name}" in MODULES, f"python -m ddim_keras.{name} has no module"
        command = importlib.import_module(f"ddim_keras.cli.{name}")
        assert callable(command.build_parser) and callable(command.main), name
        assert importlib.import_module(f"ddim_keras.{name}").main is command.main


def test_no_module_is_too_long():
    lengths = {}
    for module, path in MODULES.items():
        with open(path, encoding="utf-8") as handle:
            lengths[module] = sum(1 for _ in handle)
    long = {module: count for module, count in lengths.items() if count > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def _dataset_action(parser):
    (action,) = [a for a in parser._actions if "--dataset" in a.option_strings]
    return action


def test_dataset_names_are_data_sources_or_tfds_names():
    """--dataset has no list of its own: every command checks it by
    datasets.check_dataset_name, which accepts exactly data.SOURCES and tfds:NAME[:SPLITS]."""
    import argparse

    from ddim_keras import data
    from ddim_keras.cli import evaluate, sweep, train
    from ddim_keras.cli.args import dataset_type

    assert datasets.DATASETS is data.SOURCES
    for command in (evaluate, sweep, train):
        action = _dataset_action(command.build_parser())
        assert action.choices is None and action.type is dataset_type, command.__name__
        for name in data.SOURCES + (
            "tfds:cifar10",
            "tfds:mnist:train,test",
            "tfds:imagenet2012/subset:1.0.0:train",
        ):
            assert action.type(name) == name
        for name in (
            "mnist",
            "Flowers",
            "tfds:",
            "tfds:CIFAR10",
            "tfds:mnist:a,b,c",
            "tfds:mnist:train[:50%]",
        ):
            with pytest.raises(argparse.ArgumentTypeError):
                action.type(name)


def test_one_home_for_config_field_lists():
    from ddim_keras.io import resume

    assert resume.RESUME_MAY_CHANGE is config.RESUME_MAY_CHANGE
    fields = set(config.DiffusionConfig().to_dict())
    assert set(config.RESUME_MAY_CHANGE) <= fields
    assert set(config.ARCHITECTURE_FIELDS) <= fields
    assert not set(config.RESUME_MAY_CHANGE) & set(config.ARCHITECTURE_FIELDS)
    homes = {
        "RESUME_MAY_CHANGE": ("ddim_keras.core.config", config.RESUME_MAY_CHANGE),
        "ARCHITECTURE_FIELDS": ("ddim_keras.core.config", config.ARCHITECTURE_FIELDS),
        "DATASETS": ("ddim_keras.core.datasets", datasets.DATASETS),
    }
    # Nothing else in the package spells these lists out again.
    for module, path in MODULES.items():
        with open(path, encoding="utf-8") as handle:
            tree = ast.parse(handle.read())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Tuple, ast.List)) and all(
                isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts
            ):
                values = {e.value for e in node.elts}
                for name, (home, listed) in homes.items():
                    assert module == home or values != set(listed), (
                        f"{module}:{node.lineno} repeats {name}; import it instead"
                    )


def test_what_users_rely_on_did_not_move():
    """The public names of release 0.1.0: imports, registered Keras names, commands."""
    import keras

    from ddim_keras import DiffusionConfig, DiffusionModel, callbacks, preset
    from ddim_keras.data import load_datasets, load_images
    from ddim_keras.metrics.kid import KID, InceptionPreprocessing
    from ddim_keras.model import fused_layers, network

    assert DiffusionConfig() == preset("flowers")
    assert callable(load_datasets) and callable(load_images)
    for name in ("SampleGrid", "LossCurvePlot", "AtomicCheckpoint", "RunState", "StopOnNonFinite"):
        assert issubclass(getattr(callbacks, name), keras.callbacks.Callback), name
    registered = {
        DiffusionModel: "ddim_keras>DiffusionModel",
        network.SinusoidalEmbedding: "ddim_keras>SinusoidalEmbedding",
        fused_layers.Conv2D: "ddim_keras>Conv2D",
        fused_layers.BatchNormalization: "ddim_keras>BatchNormalization",
        KID: "ddim_keras>KID",
        InceptionPreprocessing: "ddim_keras>InceptionPreprocessing",
    }
    for cls, name in registered.items():
        assert keras.saving.get_registered_name(cls) == name
        assert keras.saving.get_registered_object(name) is cls
