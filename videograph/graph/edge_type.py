from enum import IntEnum

__all__ = ["EdgeType"]


class EdgeType(IntEnum):
    r"""The kind of every edge in the merged ``edge_index`` of a videograph graph (``data.edge_type``).

    One enumeration serves all graph kinds, so graphs of different kinds can share one relational layer
    (e.g. :class:`torch_geometric.nn.conv.RGCNConv` with ``num_relations=len(EdgeType)``).

    * ``DENSE``: MUSLE's complete tubelet graph, every ordered pair of distinct tubelets.
    * ``FRONT``: space-time region graph, a box in frame :math:`t` receives from the boxes of frame
      :math:`t + 1` it overlaps (:math:`G^{front}`).
    * ``BACK``: a box in frame :math:`t + 1` receives from the boxes of frame :math:`t` it overlaps
      (:math:`G^{back}`).
    * ``CONTEXTUAL``: P-GCN, proposals whose tIoU exceeds :math:`\theta_{ctx}`.
    * ``SURROUNDING``: P-GCN, disjoint proposals whose normalised centre distance is below
      :math:`\theta_{sur}`.
    """
    DENSE = 0
    FRONT = 1
    BACK = 2
    CONTEXTUAL = 3
    SURROUNDING = 4
