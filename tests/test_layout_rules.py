"""Rules of the package's layout (issue #12): commands only parse, call and print.

* No package module imports a command module: shared code lives in the library
  (loading, kid_eval, progress, cli_args, run_dir, ...), not in a command.
* One list per fact: the dataset names are ``data.SOURCES`` (``config.DATASETS``) and
  ``tfds:NAME``, checked by ``config.check_dataset_name`` alone,
  the fields a resume may change are ``config.RESUME_MAY_CHANGE``.
"""

import ast
import os

import ddim_keras
from ddim_keras import config, evaluate, sweep, train

COMMANDS = ("train", "generate", "evaluate", "sweep", "report", "benchmark")
PACKAGE_DIR = os.path.dirname(ddim_keras.__file__)


def _package_modules():
    return sorted(name for name in os.listdir(PACKAGE_DIR) if name.endswith(".py"))


def _is_main_guard(node):
    test = getattr(node, "test", None)
    return (isinstance(node, ast.If) and isinstance(test, ast.Compare)
            and isinstance(test.left, ast.Name) and test.left.id == "__name__")


def _imported_commands(tree):
    """(line, command) for every import of a command module outside ``__main__`` guards."""
    guarded = set()
    for node in ast.walk(tree):
        if _is_main_guard(node):
            guarded.update(id(child) for child in ast.walk(node))
    found = []
    for node in ast.walk(tree):
        if id(node) in guarded:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "ddim_keras":
                names = [f"ddim_keras.{alias.name}" for alias in node.names]
            else:
                names = [node.module]
        else:
            continue
        found += [(node.lineno, name.split(".")[1]) for name in names
                  if name.startswith("ddim_keras.") and name.split(".")[1] in COMMANDS]
    return found


def test_no_package_module_imports_a_command_module():
    offenders = []
    for file_name in _package_modules():
        path = os.path.join(PACKAGE_DIR, file_name)
        with open(path, encoding="utf-8") as handle:
            tree = ast.parse(handle.read(), path)
        own = file_name[:-3]
        offenders += [f"{file_name}:{line} imports ddim_keras.{command}"
                      for line, command in _imported_commands(tree) if command != own]
    assert not offenders, "command modules imported by the package:\n" + "\n".join(offenders)


def test_the_rule_sees_every_form_of_import():
    tree = ast.parse("import ddim_keras.generate\n"
                     "from ddim_keras.evaluate import compute_kid\n"
                     "from ddim_keras import sweep, checks\n"
                     "def f():\n    from ddim_keras.train import main\n"
                     "if __name__ == '__main__':\n    from ddim_keras.report import main\n")
    assert sorted(command for _, command in _imported_commands(tree)) == \
        ["evaluate", "generate", "sweep", "train"]


def _dataset_action(parser):
    (action,) = [a for a in parser._actions if "--dataset" in a.option_strings]
    return action


def test_dataset_names_are_data_sources_or_tfds_names():
    """--dataset has no list of its own: every command checks it by config.check_dataset_name,
    which accepts exactly data.SOURCES and tfds:NAME[:SPLITS] (issue #14)."""
    import argparse

    import pytest

    from ddim_keras import data
    from ddim_keras.cli_args import dataset_type

    assert config.DATASETS is data.SOURCES
    for command in (evaluate, sweep, train):
        action = _dataset_action(command.build_parser())
        assert action.choices is None and action.type is dataset_type, command.__name__
        for name in data.SOURCES + ("tfds:cifar10", "tfds:mnist:train,test",
                                    "tfds:imagenet2012/subset:1.0.0:train"):
            assert action.type(name) == name
        for name in ("mnist", "Flowers", "tfds:", "tfds:CIFAR10", "tfds:mnist:a,b,c",
                     "tfds:mnist:train[:50%]"):
            with pytest.raises(argparse.ArgumentTypeError):
                action.type(name)


def test_one_home_for_config_field_lists():
    assert train.RESUME_MAY_CHANGE is config.RESUME_MAY_CHANGE
    fields = set(config.DiffusionConfig().to_dict())
    assert set(config.RESUME_MAY_CHANGE) <= fields
    assert set(config.ARCHITECTURE_FIELDS) <= fields
    assert not set(config.RESUME_MAY_CHANGE) & set(config.ARCHITECTURE_FIELDS)
    # Nothing else in the package spells these lists out again.
    for file_name in _package_modules():
        if file_name == "config.py":
            continue
        with open(os.path.join(PACKAGE_DIR, file_name), encoding="utf-8") as handle:
            tree = ast.parse(handle.read())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Tuple, ast.List)) and all(
                    isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts):
                values = {e.value for e in node.elts}
                for name, listed in (("RESUME_MAY_CHANGE", config.RESUME_MAY_CHANGE),
                                     ("ARCHITECTURE_FIELDS", config.ARCHITECTURE_FIELDS),
                                     ("DATASETS", config.DATASETS)):
                    assert values != set(listed), \
                        f"{file_name}:{node.lineno} repeats config.{name}; import it instead"
