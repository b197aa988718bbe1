"""``import ddim_keras`` changes nothing (issue #20): Keras' own rules choose the backend,
and XLA:CPU's YNNPACK flag is set by the commands on JAX, or by an explicit call.

The import is checked in fresh processes, each with its own ``KERAS_HOME`` (where
Keras reads ``keras.json``) and no ``KERAS_BACKEND``, as a user's shell would be.
"""

import json
import os
import subprocess
import sys

import pytest
from conftest import without_tensorflow_env

from ddim_keras.core import backend

FLAG = backend.XLA_CPU_LIBRARY_FLAG
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: Prints what the process looks like after the import: the backend Keras runs on,
#: and whether the import changed KERAS_BACKEND or XLA_FLAGS.
REPORT = (
    "import json, os\n"
    "before = {k: os.environ.get(k) for k in ('KERAS_BACKEND', 'XLA_FLAGS')}\n"
    "import ddim_keras\n"
    "after = {k: os.environ.get(k) for k in ('KERAS_BACKEND', 'XLA_FLAGS')}\n"
    "import keras\n"
    "print(json.dumps({'backend': keras.backend.backend(), 'before': before,"
    " 'after': after}))\n"
)


def _fresh_env(tmp_path, keras_json=None, env=None):
    env = dict(os.environ if env is None else env)
    for name in ("KERAS_BACKEND", "XLA_FLAGS"):
        env.pop(name, None)
    home = tmp_path / "keras_home"
    home.mkdir(exist_ok=True)
    if keras_json is not None:
        (home / "keras.json").write_text(json.dumps(keras_json))
    env["KERAS_HOME"] = str(home)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), ROOT) if p)
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return env


def _report(env, code=REPORT):
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("chosen", ["jax", "torch"])
def test_keras_json_backend_is_honoured(tmp_path, chosen):
    """keras.json says jax (or torch) and TensorFlow is installed: Keras runs on jax."""
    pytest.importorskip(chosen)
    report = _report(_fresh_env(tmp_path, {"backend": chosen}))
    assert report["backend"] == chosen
    assert report["after"] == report["before"] == {"KERAS_BACKEND": None, "XLA_FLAGS": None}


def test_no_configuration_keeps_keras_default(tmp_path):
    pytest.importorskip("tensorflow")
    report = _report(_fresh_env(tmp_path))
    assert report["backend"] == "tensorflow"
    assert report["after"] == {"KERAS_BACKEND": None, "XLA_FLAGS": None}


def test_keras_backend_variable_wins_over_keras_json(tmp_path):
    pytest.importorskip("jax")
    env = _fresh_env(tmp_path, {"backend": "tensorflow"})
    env["KERAS_BACKEND"] = "jax"
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    report = _report(env)
    assert report["backend"] == "jax"
    assert report["after"] == report["before"]


def test_an_installed_backend_is_picked_only_where_keras_would_fail(tmp_path):
    """Without TensorFlow and with nothing configured, Keras would fail on its default:
    the package sets the first installed backend (and only then touches KERAS_BACKEND)."""
    pytest.importorskip("jax")
    env = _fresh_env(tmp_path, env=without_tensorflow_env(tmp_path))
    report = _report(env)
    assert report["backend"] == "jax"
    assert report["before"]["KERAS_BACKEND"] is None and report["after"]["KERAS_BACKEND"] == "jax"
    assert report["after"]["XLA_FLAGS"] is None


def test_choose_backend_rules(tmp_path, monkeypatch):
    """The rule itself, on a dict environment: keras.json, then Keras' default."""
    monkeypatch.delitem(sys.modules, "keras", raising=False)  # as before Keras is imported
    home = tmp_path / "home"
    home.mkdir()
    environ = {"KERAS_HOME": str(home)}
    installed = {"tensorflow": False, "jax": False, "torch": True}
    monkeypatch.setattr(backend, "installed", lambda name: installed.get(name, False))
    assert backend.configured_backend(environ) == "tensorflow"
    assert backend.choose_backend(environ) == "torch" and environ["KERAS_BACKEND"] == "torch"
    environ = {"KERAS_HOME": str(home)}
    (home / "keras.json").write_text(json.dumps({"backend": "torch"}))
    assert backend.choose_backend(environ) == "torch" and "KERAS_BACKEND" not in environ
    (home / "keras.json").write_text("not json")
    installed["tensorflow"] = True
    assert backend.choose_backend(environ) == "tensorflow" and "KERAS_BACKEND" not in environ


@pytest.mark.parametrize("keras_backend,expect_flag", [("jax", True), ("tensorflow", False)])
def test_commands_set_the_flag_on_jax_only(tmp_path, keras_backend, expect_flag):
    """A command (run_cli) on JAX adds the flag for its own process; on TensorFlow it
    does not (TensorFlow's XLA reads XLA_FLAGS too and aborts on flags it does not know)."""
    pytest.importorskip(keras_backend)
    env = _fresh_env(tmp_path)
    env["KERAS_BACKEND"] = keras_backend
    code = (
        "import json, os\n"
        "from ddim_keras.cli.runner import run_cli\n"
        "run_cli(lambda argv: print(json.dumps({'backend': 0, 'before': 0,"
        " 'after': {'XLA_FLAGS': os.environ.get('XLA_FLAGS')}})), [])\n"
    )
    flags = _report(env, code)["after"]["XLA_FLAGS"]
    wanted = expect_flag and backend.jaxlib_takes_xla_cpu_library_flag()
    assert (flags == f"{FLAG}=dot,eltwise,reduce") == wanted
    if not wanted:
        assert flags is None


@pytest.fixture
def jaxlib(monkeypatch):
    """Pretend a given jaxlib version (None: not installed)."""

    def pretend(version):
        monkeypatch.setattr(backend, "_jaxlib_version", lambda: version)

    return pretend


def test_flag_added_for_a_recent_jaxlib_keeping_the_users_flags(jaxlib):
    jaxlib((0, 10, 2))
    environ = {}
    assert not backend.xla_cpu_libraries_set(environ)
    backend.use_xla_cpu_libraries(environ)
    assert environ["XLA_FLAGS"] == f"{FLAG}=dot,eltwise,reduce"
    assert backend.xla_cpu_libraries_set(environ)
    environ = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    backend.use_xla_cpu_libraries(environ)
    assert environ["XLA_FLAGS"].split() == [
        "--xla_force_host_platform_device_count=2",
        f"{FLAG}=dot,eltwise,reduce",
    ]


def test_users_own_setting_of_the_flag_wins(jaxlib):
    jaxlib((0, 11, 0))
    switched_off = f"{FLAG}=-dot,-eltwise,-reduce"
    environ = {"XLA_FLAGS": switched_off}
    backend.use_xla_cpu_libraries(environ)
    assert environ["XLA_FLAGS"] == switched_off
    assert not backend.xla_cpu_libraries_set(environ)


@pytest.mark.parametrize("version", [None, (0, 4, 38), (0, 10, 1), (0, 11, 0)])
def test_no_flag_where_jaxlib_lacks_it(jaxlib, version):
    # A jaxlib that does not know the flag (older; a later one may drop it) aborts at start-up.
    jaxlib(version)
    environ = {"XLA_FLAGS": "--xla_cpu_enable_fast_math=false"}
    backend.use_xla_cpu_libraries(environ)
    assert environ == {"XLA_FLAGS": "--xla_cpu_enable_fast_math=false"}


def test_installed_jaxlib_accepts_the_flag_it_is_given(tmp_path):
    """Where the flag is set, this jaxlib parses it and computes a convolution with it."""
    pytest.importorskip("jax")
    env = _fresh_env(tmp_path)
    code = (
        "import os\n"
        "from ddim_keras import use_xla_cpu_libraries\n"
        "use_xla_cpu_libraries()\n"
        "import jax, jax.numpy as jnp\n"
        "x = jnp.ones((1, 4, 4, 2)); k = jnp.ones((3, 3, 2, 1))\n"
        "y = jax.lax.conv_general_dilated(x, k, (1, 1), 'SAME',"
        " dimension_numbers=('NHWC', 'HWIO', 'NHWC'))\n"
        "print(os.environ.get('XLA_FLAGS', ''), float(y[0, 1, 1, 0]), float(y[0, 0, 0, 0]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    flags, centre, corner = result.stdout.split()[:-2], *map(float, result.stdout.split()[-2:])
    assert (f"{FLAG}=dot,eltwise,reduce" in flags) == backend.jaxlib_takes_xla_cpu_library_flag()
    # 3x3 window of ones over 2 channels of ones: 18 inside, 8 in a corner.
    assert (centre, corner) == (18.0, 8.0)


def test_child_processes_do_not_inherit_the_flag_a_command_added(jaxlib):
    """benchmark --backends runs one child per backend: a TensorFlow child must not read
    the flag its JAX parent set for itself; a flag the user set stays."""
    jaxlib((0, 10, 2))
    environ = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2", "HOME": "/h"}
    backend.use_xla_cpu_libraries(environ)
    assert backend.xla_cpu_libraries_set(environ)
    child = backend.child_environment(environ, KERAS_BACKEND="tensorflow")
    assert child == {
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        "HOME": "/h",
        "KERAS_BACKEND": "tensorflow",
    }
    assert backend.xla_cpu_libraries_set(environ)  # this process keeps it
    alone = {}
    backend.use_xla_cpu_libraries(alone)
    assert backend.child_environment(alone) == {}
    users_own = {"XLA_FLAGS": f"{FLAG}=dot,eltwise,reduce"}
    assert backend.child_environment(users_own) == users_own  # not added by us: kept
