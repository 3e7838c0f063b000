import math

import networkx as nx
import pytest
import torch

from videograph import Tubelets, build_graph
from videograph.graph import box_coordinates, tubelet_order


def random_tubelets(generator, num_clips=3, per_clip=4, frames=2, size=(60, 80)):
    n = num_clips * per_clip
    corner = torch.rand(n, frames, 2, generator=generator) * 40
    extent = 1 + torch.rand(n, frames, 2, generator=generator) * 15
    clip = torch.arange(num_clips).repeat_interleave(per_clip)
    return Tubelets(torch.cat([corner, corner + extent], -1), clip, torch.randn(n, 5, generator=generator),
                    frame_size=size)


def test_node_order_matches_the_paper_rule(generator):
    video = random_tubelets(generator)
    perm = tubelet_order(video.boxes, video.clip)

    def key(i):
        boxes = video.boxes[i].tolist()
        cx = sum((b[0] + b[2]) / 2 for b in boxes) / len(boxes)
        cy = sum((b[1] + b[3]) / 2 for b in boxes) / len(boxes)
        return (int(video.clip[i]), math.hypot(cx, cy), cy, cx, i)

    assert perm.tolist() == sorted(range(len(video)), key=key)


def test_ties_are_broken_by_y_then_x():
    # Both centres lie at distance 5 from the corner: (3, 4) and (4, 3); the smaller y comes first.
    boxes = torch.tensor([[[2.0, 3.0, 4.0, 5.0]], [[3.0, 2.0, 5.0, 4.0]]])
    assert tubelet_order(boxes, torch.tensor([0, 0])).tolist() == [1, 0]


def test_graph_is_complete_with_relative_coordinates(generator):
    video = random_tubelets(generator)
    data = build_graph(video)
    n, frames = len(video), video.num_frames
    height, width = video.frame_size

    graph = nx.DiGraph(data.dense_edge_index.t().tolist())
    assert nx.is_isomorphic(graph, nx.complete_graph(n, create_using=nx.DiGraph))
    assert graph.number_of_edges() == n * (n - 1) and data.dense_edge_index.size(1) == n * (n - 1)

    for node in range(n):
        original = int(data.perm[node])
        expected = []
        for t in range(frames):
            x1, y1, x2, y2 = video.boxes[original, t].tolist()
            expected += [(x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (y2 - y1) / height, (x2 - x1) / width]
        torch.testing.assert_close(data.coord[node], torch.tensor(expected))
        torch.testing.assert_close(data.x[node], video.features[original])
    src, dst = data.dense_edge_index
    torch.testing.assert_close(data.dense_edge_attr, data.coord[src] - data.coord[dst])
    assert torch.equal(data.edge_index, data.dense_edge_index)
    torch.testing.assert_close(data.edge_attr, data.dense_edge_attr)


def test_clips_stay_in_order(generator):
    data = build_graph(random_tubelets(generator))
    assert bool((data.clip[1:] >= data.clip[:-1]).all())


def test_single_tubelet_has_no_edges():
    data = build_graph(Tubelets([[[0.0, 0.0, 1.0, 1.0]]], [0], frame_size=(4, 4)))
    assert data.num_nodes == 1 and data.edge_index.shape == (2, 0)


@pytest.mark.parametrize("shape", [(4,), (3, 4), (2, 3, 4)])
def test_box_coordinates_keep_leading_shape(shape):
    boxes = torch.tensor([0.0, 0.0, 2.0, 4.0]).expand(shape)
    out = box_coordinates(boxes, (8, 4))
    assert out.shape == boxes.shape
    torch.testing.assert_close(out.reshape(-1, 4)[0], torch.tensor([0.25, 0.25, 0.5, 0.5]))
