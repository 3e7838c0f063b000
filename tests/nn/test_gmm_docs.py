import os
import re

import torch

DOC = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "gmm.md")


def test_docs_example_runs():
    """docs/gmm.md's example is what the model code copies: it must run as printed."""
    blocks = re.findall(r"```python\n(.*?)```", open(DOC).read(), flags=re.S)
    namespace = {}
    exec(compile(blocks[0], "docs/gmm.md", "exec"), namespace)
    scores, best, video0 = namespace["scores"], namespace["best"], namespace["video0"]
    assert scores.shape == (2, 5) and torch.isfinite(scores).all()
    k = int(best.scale[0, namespace["pred"][0]])
    assert k in (3, 4) and bool((video0[:k] >= 0).all()) and bool((video0[k:] == -1).all())
    assert bool((video0[:k] < 8).all()) and bool((video0[:k].diff() > 0).all())
