"""nightrec core: config, event schema, readers, synthetic data, popularity and publishing.

Plain functions on Polars frames and paths; nothing here imports Prefect or torch.
"""

__version__ = "0.1.0"
