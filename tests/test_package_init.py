"""What ``import ddim_keras`` sets before the backends load: the XLA:CPU library flag."""

import os
import subprocess
import sys

import pytest

import ddim_keras

FLAG = ddim_keras.XLA_CPU_LIBRARY_FLAG


@pytest.fixture
def jaxlib(monkeypatch):
    """Pretend a given jaxlib version (None: not installed)."""
    def pretend(version):
        monkeypatch.setattr(ddim_keras, "_jaxlib_version", lambda: version)
    return pretend


def test_flag_added_for_a_recent_jaxlib_keeping_the_users_flags(jaxlib):
    jaxlib((0, 10, 2))
    environ = {}
    assert not ddim_keras.xla_cpu_libraries_set(environ)
    ddim_keras.use_xla_cpu_libraries(environ)
    assert environ["XLA_FLAGS"] == f"{FLAG}=dot,eltwise,reduce"
    assert ddim_keras.xla_cpu_libraries_set(environ)
    environ = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    ddim_keras.use_xla_cpu_libraries(environ)
    assert environ["XLA_FLAGS"].split() == ["--xla_force_host_platform_device_count=2",
                                            f"{FLAG}=dot,eltwise,reduce"]


def test_users_own_setting_of_the_flag_wins(jaxlib):
    jaxlib((0, 11, 0))
    switched_off = f"{FLAG}=-dot,-eltwise,-reduce"
    environ = {"XLA_FLAGS": switched_off}
    ddim_keras.use_xla_cpu_libraries(environ)
    assert environ["XLA_FLAGS"] == switched_off
    assert not ddim_keras.xla_cpu_libraries_set(environ)


@pytest.mark.parametrize("version", [None, (0, 4, 38), (0, 10, 1), (0, 11, 0)])
def test_no_flag_where_jaxlib_lacks_it(jaxlib, version):
    # A jaxlib that does not know the flag (older; a later one may drop it) aborts at start-up.
    jaxlib(version)
    environ = {"XLA_FLAGS": "--xla_cpu_enable_fast_math=false"}
    ddim_keras.use_xla_cpu_libraries(environ)
    assert environ == {"XLA_FLAGS": "--xla_cpu_enable_fast_math=false"}


def test_installed_jaxlib_accepts_the_flag_it_is_given():
    """Where the flag is set, this jaxlib parses it and computes a convolution with it."""
    pytest.importorskip("jax")
    environ = dict(os.environ)
    environ.pop("XLA_FLAGS", None)
    code = ("import os, ddim_keras, jax, jax.numpy as jnp\n"
            "x = jnp.ones((1, 4, 4, 2)); k = jnp.ones((3, 3, 2, 1))\n"
            "y = jax.lax.conv_general_dilated(x, k, (1, 1), 'SAME',"
            " dimension_numbers=('NHWC', 'HWIO', 'NHWC'))\n"
            "print(os.environ.get('XLA_FLAGS', ''), float(y[0, 1, 1, 0]), float(y[0, 0, 0, 0]))\n")
    result = subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    flags, centre, corner = result.stdout.split()[:-2], *map(float, result.stdout.split()[-2:])
    assert (f"{FLAG}=dot,eltwise,reduce" in flags) == ddim_keras.jaxlib_takes_xla_cpu_library_flag()
    # 3x3 window of ones over 2 channels of ones: 18 inside, 8 in a corner.
    assert (centre, corner) == (18.0, 8.0)
