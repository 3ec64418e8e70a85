from shared.graph.client import GraphClient, LongLivedToken, ShortLivedToken
from shared.graph.errors import (
    GraphError,
    GraphOutcomeUnknown,
    GraphPermissionError,
    GraphRateLimitError,
    GraphRequestError,
    GraphTokenError,
    GraphTransientError,
)

__all__ = [
    "GraphClient",
    "GraphError",
    "GraphOutcomeUnknown",
    "GraphPermissionError",
    "GraphRateLimitError",
    "GraphRequestError",
    "GraphTokenError",
    "GraphTransientError",
    "LongLivedToken",
    "ShortLivedToken",
]
