import itertools

import networkx as nx
import torch
from torch_geometric.data import Data


def graph_from_nx(G: nx.Graph, directed_one_way: bool = True) -> Data:
    """PyG graph of ``G`` over nodes ``0..n-1``; one direction per edge by default."""
    edges = [(u, w) for u, w in G.edges()]
    if not directed_one_way:
        edges += [(w, u) for u, w in edges]
    edge_index = torch.tensor(edges, dtype=torch.long).t().reshape(2, -1)
    return Data(edge_index=edge_index, num_nodes=G.number_of_nodes())


def connected_oracle(G: nx.Graph, k: int):
    """All k-subsets inducing a connected sub-graph, by brute force."""
    return [c for c in itertools.combinations(range(G.number_of_nodes()), k)
            if nx.is_connected(G.subgraph(c))]
