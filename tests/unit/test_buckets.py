import pytest
import torch

from corrtrack.models.buckets import bucket, pad_batch


@pytest.mark.parametrize("n,want", [(0, 0), (1, 1), (2, 2), (3, 4), (5, 8), (8, 8), (9, 16), (33, 64)])
def test_bucket_is_next_power_of_two(n, want):
    assert bucket(n) == want


def test_pad_batch_leaves_cpu_tensors_alone():
    x = torch.ones(3, 2)
    assert pad_batch(x) is x


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_pad_batch_pads_cuda_with_zero_rows():
    x = torch.ones(3, 2, device="cuda")
    y = pad_batch(x)
    assert y.shape == (4, 2) and torch.equal(y[:3], x) and not y[3].any()
