"""A DICOM node that screens studies as they arrive (``ra-sdk listen``; needs ra-sdk[node]).

    from ra_sdk.node import Node, NodeConfig
    with Node(NodeConfig(out="node-out", port=11112), ra_sdk.load()) as node:
        ...  # C-STORE studies to port 11112; rows land in node-out/results.csv

See :mod:`ra_sdk.node.service` for the folder layout, completion and crash rules.
"""

from .forward import Destination
from .service import Node, NodeConfig

__all__ = ["Destination", "Node", "NodeConfig"]
