"""experiments/colab_quickstart.ipynb: committed clean, and runs top to bottom headless."""

import os
import sys

import nbformat
import pytest

NOTEBOOK = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    "experiments",
    "colab_quickstart.ipynb",
)


@pytest.fixture(scope="module")
def notebook():
    return nbformat.read(NOTEBOOK, as_version=4)


def test_committed_notebook_is_valid_and_has_no_outputs(notebook):
    nbformat.validate(notebook)
    assert notebook.nbformat == 4
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code
    for cell in code:
        assert cell.outputs == [] and cell.execution_count is None


def test_notebook_guards_install_and_tensorboard_magics(notebook):
    sources = [cell.source for cell in notebook.cells if cell.cell_type == "code"]
    install = next(source for source in sources if "%pip install" in source)
    assert "if IN_COLAB:" in install and 'IN_COLAB = "google.colab" in sys.modules' in install
    board = next(source for source in sources if "%tensorboard" in source)
    assert "if IN_COLAB or not TINY:" in board
    assert any('os.environ.get("DDIM_NOTEBOOK_TINY") == "1"' in source for source in sources)


def python3_kernel_runs_this_interpreter():
    """The python3 kernelspec jupyter_client finds starts this venv's interpreter."""
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec("python3")
    # jupyter_client runs a bare "python"/"python3" argv[0] as sys.executable.
    version = "python{}.{}".format(*sys.version_info[:2])
    return spec.argv[0] in ("python", "python3", version, sys.executable)


def test_notebook_runs_tiny_top_to_bottom(notebook, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    assert python3_kernel_runs_this_interpreter()
    monkeypatch.setenv("DDIM_NOTEBOOK_TINY", "1")
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    run = nbformat.from_dict(notebook)  # a copy: the module fixture stays clean
    probe = nbformat.v4.new_code_cell("import sys; print(sys.executable)")
    run.cells.append(probe)
    client = NotebookClient(
        run, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell

    outputs = [output for cell in run.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    executable = "".join(output.get("text", "") for output in run.cells[-1].outputs).strip()
    assert os.path.realpath(executable) == os.path.realpath(sys.executable)

    def images(cell):
        return [output for output in cell.outputs if "image/png" in output.get("data", {})]

    training = next(cell for cell in run.cells if "model.fit(" in cell.source)
    # SampleGrid detected the notebook: one grid per epoch, then LossCurvePlot's plot.
    assert len(images(training)) == 3
    generating = next(cell for cell in run.cells if "model.generate(" in cell.source)
    assert len(images(generating)) == 1
    # The files the callbacks wrote, relative to the kernel's working directory.
    work = tmp_path / "quickstart"
    assert sorted(os.listdir(work / "samples")) == ["epoch_0001.png", "epoch_0002.png"]
    assert (work / "curves.png").is_file()
    assert {"samples", "train", "validation"} <= set(os.listdir(work / "logs"))
