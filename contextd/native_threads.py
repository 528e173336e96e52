"""Native thread pools: keep them from fighting over the cores.

A contextd process holds two OpenMP runtimes (PyTorch's and FAISS's) and two OpenBLAS builds
(NumPy's and FAISS's), each sized to every core and busy-waiting between calls by default.
Their spinning threads steal the cores the next embedding needs: on 2 cores a query embedding
inside the engine took 47 ms p50 with the defaults and 27 ms with these limits
(benchmarks/RESULTS.md).

    >>> limiter = limit_native_threads()
"""

from __future__ import annotations

import os
from typing import Any


def limit_native_threads() -> Any:
    """Make idle OpenMP threads sleep and BLAS run single-threaded (unless set already).

    Concurrency comes from requests and batches, not from BLAS. On 2 cores this took a
    1-client /v1/assemble from ~600 ms to ~90 ms p50 (benchmarks/results/http.md). Runtimes
    read these variables when they load, so this runs before the first embedding or search.

        >>> limiter = limit_native_threads()
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from threadpoolctl import threadpool_limits

    # NumPy's OpenBLAS is loaded already (contextd imports numpy), so limit it in place too;
    # the returned limiter can restore the previous limits (tests do).
    return threadpool_limits(int(os.environ["OPENBLAS_NUM_THREADS"]), user_api="blas")
