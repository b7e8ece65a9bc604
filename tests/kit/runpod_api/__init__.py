"""A loopback RunPod job API and `python -m handler` in the SDK's production loop against it.

Used by the tests beside it (fixtures in conftest.py) and by `python -m bench loop`.
"""

from .production import ProductionWorker, loop_env, start_worker
from .server import JobApi, Post

__all__ = ["JobApi", "Post", "ProductionWorker", "loop_env", "start_worker"]
