"""k-node sub-graph enumeration (complete and connected), multi-scale and streaming."""
from .combinations import cache_info, clear_cache
from .enumerate import enumerate_subgraphs, iter_subgraphs, multiscale
from .subgraphs import Prefixes, Subgraphs, pair_nodes, pair_ptr, slot_pairs

__all__ = [
    'Subgraphs',
    'Prefixes',
    'enumerate_subgraphs',
    'iter_subgraphs',
    'multiscale',
    'pair_nodes',
    'pair_ptr',
    'slot_pairs',
    'clear_cache',
    'cache_info',
]
