"""BLAS threads: the engine's products are small (a client's batch, a chunk of evaluation rows),
and a multithreaded BLAS wakes its threads for each of them, which costs more than the product
itself, far more on a busy machine. The engine holds BLAS to one thread and parallelizes over
clients instead."""

from functools import cache


@cache
def _controller():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def one_blas_thread():
    """Context manager: BLAS runs single-threaded inside it."""
    return _controller().limit(limits=1, user_api="blas")
