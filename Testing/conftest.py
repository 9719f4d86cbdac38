"""Suite-wide settings."""

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    # The test networks are tiny and CI's machine has two shared cores: there, two OpenMP threads
    # spend most of their time waiting on each other (a tiny forward measured 20x slower than on
    # one thread), so the whole suite runs torch on one.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
