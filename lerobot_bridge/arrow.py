"""pyarrow, imported with the system allocator as its default memory pool.

Why: with pyarrow's default pool (mimalloc), a converter process that has read a parquet file
grows its resident memory with every video frame it decodes afterwards (~20 MiB over 3600
640x480 frames, measured with scripts/bench_convert.py), although Arrow allocates nothing
then. With the system pool it stays flat. The choice must be made before pyarrow first
initializes its pool, hence an environment default set before the import; a user's explicit
ARROW_DEFAULT_MEMORY_POOL wins. Import pyarrow in this package only through this module.
"""

import os

os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

__all__ = ["pa", "pc", "pq"]
