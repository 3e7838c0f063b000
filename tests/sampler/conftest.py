import pytest
import torch
from torch_geometric.data import Batch, Data

CONTEXTUAL, SURROUNDING = 3, 4  # videograph's EdgeType values


def proposal_graph(num_proposals: int, num_classes: int, num_features: int, generator: torch.Generator) -> Data:
    """A P-GCN proposal graph of one synthetic video, edges by brute force over all pairs.

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

    inter = (torch.minimum(end[:, None], end[None]) - torch.maximum(start[:, None], start[None])).clamp(min=0)
    union = length[:, None] + length[None] - inter
    tiou = inter / union
    distance = (centre[:, None] - centre[None]).abs() / union
    off_diagonal = ~torch.eye(num_proposals, dtype=torch.bool)
    contextual = ((tiou > 0.7) & off_diagonal).nonzero().t()
    surrounding = ((tiou == 0) & (distance < 1)).nonzero().t()

    y = torch.where(is_action, action_class[which.clamp(min=0)], torch.zeros_like(which))
    prototypes = torch.randn(num_classes, num_features, generator=torch.Generator().manual_seed(12345))
    x = prototypes[y] + 0.8 * torch.randn(num_proposals, num_features, generator=generator)
    edge_index = torch.cat([contextual, surrounding], dim=1)
    edge_type = torch.cat([torch.full((contextual.size(1), ), CONTEXTUAL), torch.full((surrounding.size(1), ),
                                                                                      SURROUNDING)])
    edge_weight = torch.nn.functional.cosine_similarity(x[edge_index[0]], x[edge_index[1]], dim=-1)
    return Data(x=x, y=y, segment=torch.stack([start, end], dim=-1), edge_index=edge_index, edge_type=edge_type,
                edge_weight=edge_weight, contextual_edge_index=contextual, surrounding_edge_index=surrounding,
                num_nodes=num_proposals)


@pytest.fixture
def make_proposal_batch():
    def make(num_videos: int = 3, num_proposals: int = 60, num_classes: int = 4, num_features: int = 8,
             seed: int = 0) -> Batch:
        generator = torch.Generator().manual_seed(seed)
        graphs = [proposal_graph(num_proposals, num_classes, num_features, generator) for _ in range(num_videos)]
        return Batch.from_data_list(graphs)

    return make
