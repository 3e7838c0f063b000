import os

import pytest
import torch
from torchvision.models.detection import ssdlite320_mobilenet_v3_large

from videograph.cli import main
from videograph.io import write_video

BUILDER = "ssdlite320_mobilenet_v3_large"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    frames = torch.randint(0, 256, (12, 64, 64, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    video = folder / "noise.mp4"
    write_video(video, frames, fps=8)
    torch.manual_seed(0)
    weights = folder / "weights.pt"
    torch.save(ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None).state_dict(), weights)
    return str(video), str(weights), folder


@pytest.mark.parametrize("kind", ["tubelets", "regions"])
def test_graph_command_prints_and_draws(files, kind, capsys):
    video, weights, folder = files
    out = str(folder / kind)
    main(["graph", video, "--kind", kind, "--out", out, "--detector", BUILDER, "--weights", weights,
          "--score-threshold", "0", "--num-clips", "2", "--clip-len", "4", "--top-m", "3", "--no-progress"])
    printed = capsys.readouterr().out
    assert f"{kind} graph" in printed and "nodes" in printed
    assert os.path.isfile(os.path.join(out, f"graph_noise_{kind}.png"))


@pytest.mark.parametrize("argv,error,match", [
    (["--detector", "no_such_model"], ValueError, "no_such_model"),
    (["--detector", BUILDER], ValueError, "--weights"),
])
def test_graph_command_bad_detector(files, argv, error, match):
    video, _, folder = files
    with pytest.raises(error, match=match):
        main(["graph", video, "--out", str(folder), "--no-progress"] + argv)


def test_graph_command_missing_video(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.mp4"):
        main(["graph", str(tmp_path / "absent.mp4"), "--out", str(tmp_path)])
