from shared.graph.client import GraphClient, LongLivedToken, Media, ShortLivedToken
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
    "Media",
    "ShortLivedToken",
]
