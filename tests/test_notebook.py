"""The quickstart notebook runs top to bottom and shows the model beating constant velocity."""
import re

import nbformat
from nbclient import NotebookClient

from conftest import ROOT


def test_quickstart_notebook_executes(tmp_path):
    nb = nbformat.read(ROOT / "notebooks" / "quickstart.ipynb", as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    model, cv = map(float, re.search(r"minADE_20 ([\d.]+) m  \(constant velocity ([\d.]+) m\)", text).groups())
    assert model < cv
    last = nb.cells[-1].outputs[0]["data"]["text/plain"]
    assert "agent_id" in last and "frame" in last
