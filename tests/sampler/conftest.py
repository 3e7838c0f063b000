import pytest
import torch
from torch_geometric.data import Batch, Data

from videograph import EdgeType, Proposals, build_graph

CONTEXTUAL, SURROUNDING = int(EdgeType.CONTEXTUAL), int(EdgeType.SURROUNDING)


def proposal_graph(num_proposals: int, num_classes: int, num_features: int, generator: torch.Generator) -> Data:
    """A P-GCN proposal graph of one synthetic video (contextual and surrounding edges, cosine weights).

    Proposals jitter a few action instances (class 1..num_classes) or lie anywhere (background,
    class 0); features are a class prototype plus noise, so neighbours carry label information.
    """
    num_actions = 4
    action_centre = torch.rand(num_actions, generator=generator) * 100
    action_length = 5 + torch.rand(num_actions, generator=generator) * 15
    action_class = torch.randint(1, num_classes, (num_actions, ), generator=generator)
    which = torch.randint(-1, num_actions, (num_proposals, ), generator=generator)
    is_action = which >= 0
    jitter = 0.1 * (torch.rand(num_proposals, 2, generator=generator) - 0.5)
    centre = torch.where(is_action, action_centre[which.clamp(min=0)] + jitter[:, 0] * action_length[which],
                         torch.rand(num_proposals, generator=generator) * 100)
    length = torch.where(is_action, action_length[which] * (1 + jitter[:, 1]),
                         2 + torch.rand(num_proposals, generator=generator) * 18)
    start, end = centre - length / 2, centre + length / 2

    y = torch.where(is_action, action_class[which.clamp(min=0)], torch.zeros_like(which))
    prototypes = torch.randn(num_classes, num_features, generator=torch.Generator().manual_seed(12345))
    x = prototypes[y] + 0.8 * torch.randn(num_proposals, num_features, generator=generator)
    # Proposals may start before 0 after jitter: shift the video so every segment is valid.
    segments = torch.stack([start, end], dim=-1)
    return build_graph(Proposals(segments - segments.min().clamp(max=0), x, labels=y))


@pytest.fixture
def make_proposal_batch():
    def make(num_videos: int = 3, num_proposals: int = 60, num_classes: int = 4, num_features: int = 8,
             seed: int = 0) -> Batch:
        generator = torch.Generator().manual_seed(seed)
        graphs = [proposal_graph(num_proposals, num_classes, num_features, generator) for _ in range(num_videos)]
        return Batch.from_data_list(graphs)

    return make
