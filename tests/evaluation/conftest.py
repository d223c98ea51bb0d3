"""One torch thread for these tests: on a shared, loaded 2-core CPU the small matrix work of the metrics runs
several times faster on one thread than on two."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
