import torch
from torchvision.ops import box_iou

from videograph import Regions, build_graph


def iou(a, b):
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union > 0 else 0.0


def random_regions(generator, frames=(0, 1, 2, 4, 5), per_frame=4):
    frame = torch.tensor(frames).repeat_interleave(per_frame)
    corner = torch.rand(frame.numel(), 2, generator=generator) * 30
    boxes = torch.cat([corner, corner + 5 + torch.rand(frame.numel(), 2, generator=generator) * 20], -1)
    return Regions(boxes, frame, torch.randn(frame.numel(), 3, generator=generator), frame_size=(64, 64))


def dense_graphs(video):
    """The paper's G^front and G^back as dense matrices, from a loop over box pairs."""
    n = len(video)
    front, back = torch.zeros(n, n), torch.zeros(n, n)
    boxes = video.boxes.tolist()
    for i in range(n):
        for j in range(n):
            if int(video.frame[j]) == int(video.frame[i]) + 1:
                sigma = iou(boxes[i], boxes[j])
                if sigma > 0:
                    front[i, j] = sigma
                    back[j, i] = sigma
    normalise = lambda g: g / g.sum(1, keepdim=True).clamp(min=1e-30)
    return normalise(front), normalise(back)


def aggregate(edge_index, weight, x):
    """What a PyG conv with aggr='add' computes: out_i = sum over edges j -> i of w * x_j."""
    out = torch.zeros_like(x)
    return out.index_add_(0, edge_index[1], weight[:, None] * x[edge_index[0]])


def test_front_and_back_equal_the_row_normalised_iou_graphs(generator):
    video = random_regions(generator)
    data = build_graph(video)
    front, back = dense_graphs(video)
    x = torch.randn(len(video), 6, generator=generator)
    torch.testing.assert_close(aggregate(data.front_edge_index, data.front_edge_weight, x), front @ x)
    torch.testing.assert_close(aggregate(data.back_edge_index, data.back_edge_weight, x), back @ x)
    assert data.front_edge_index.size(1) == int((front > 0).sum())
    assert data.back_edge_index.size(1) == int((back > 0).sum())


def test_edges_link_consecutive_frames_only(generator):
    data = build_graph(random_regions(generator))
    src, dst = data.front_edge_index
    assert bool((data.frame[src] == data.frame[dst] + 1).all())
    src, dst = data.back_edge_index
    assert bool((data.frame[src] + 1 == data.frame[dst]).all())


def test_iou_agrees_with_torchvision(generator):
    video = random_regions(generator, frames=(0, 1), per_frame=5)
    data = build_graph(video, edges="back")
    raw = box_iou(video.boxes[:5], video.boxes[5:])
    i, j = raw.nonzero(as_tuple=True)
    assert data.back_edge_index.size(1) == i.numel()
    expected = raw / raw.sum(0, keepdim=True).clamp(min=1e-30)  # back: each frame-1 box's incoming sum to 1
    for (src, dst), w in zip(data.back_edge_index.t().tolist(), data.back_edge_weight.tolist()):
        assert abs(expected[src, dst - 5] - w) < 1e-6
    assert "front_edge_index" not in data


def test_iou_threshold(generator):
    video = random_regions(generator)
    loose, strict = build_graph(video), build_graph(video, iou_threshold=0.3)
    assert strict.front_edge_index.size(1) < loose.front_edge_index.size(1)
    raw = box_iou(video.boxes, video.boxes)
    src, dst = strict.front_edge_index
    assert bool((raw[src, dst] > 0.3).all())


def test_single_frame_has_no_edges():
    data = build_graph(Regions([[0.0, 0.0, 2.0, 2.0], [1.0, 1.0, 3.0, 3.0]], [3, 3], frame_size=(4, 4)))
    assert data.edge_index.shape == (2, 0) and data.edge_weight.shape == (0,)
