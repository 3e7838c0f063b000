import os
import re

README = os.path.join(os.path.dirname(__file__), "..", "README.md")


def test_readme_example_runs():
    """The README's build_graph example is the first thing users copy: it must run as printed."""
    text = open(README).read()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "README has no python example"
    namespace = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    data, batch = namespace["data"], namespace["batch"]
    assert data.edge_index.size(1) == data.contextual_edge_index.size(1) + data.surrounding_edge_index.size(1)
    assert batch.num_graphs == 2 and namespace["out"].shape == (300, 64)
