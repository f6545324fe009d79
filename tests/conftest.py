import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module: many small ops on a shared 2-core CPU run 10-50x slower with 2
    threads while another process computes (the threads spin-wait for each other)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
