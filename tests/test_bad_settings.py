"""Issue 21, classes 5, 7 and 8: bad ranks, tiny temperatures, lone surrogates (engineer B's files)."""

import pytest
import torch

from utils import distributed
from utils.generate import apply_temperature, greedy, sample_next
from utils.tokenizers import CharTokenizer


@pytest.mark.parametrize("rank, world_size, name", [
    (0.5, 2, "rank"), (0, 2.5, "world_size"), (1.0, 2, "rank"), (True, 2, "rank"), (0, "2", "world_size")])
def test_distributed_helpers_refuse_non_integer_ranks_and_world_sizes(rank, world_size, name):
    for helper in (distributed.share_of, distributed.split_batches):
        with pytest.raises(ValueError, match=rf"^{name} must be an integer"):
            helper(list(range(10)), rank=rank, world_size=world_size)
    with pytest.raises(ValueError, match=rf"^{name} must be an integer"):
        distributed.rank_batch_at(lambda i: (i,), rank=rank, world_size=world_size)


def test_start_processes_refuses_a_non_integer_process_count():
    for bad in (2.5, 0.5, "2", True):
        with pytest.raises(ValueError, match="^world_size must be an integer"):
            distributed.start_processes(print, bad)
    with pytest.raises(ValueError, match="^world_size must be >= 1"):
        distributed.start_processes(print, 0)


def test_ranks_in_range_still_work():
    assert distributed.share_of(list(range(5)), rank=1, world_size=2) == [1, 3]
    assert distributed.split_batches(list(range(5)), rank=torch.tensor(1), world_size=2) == [1, 3, 0]
    with pytest.raises(ValueError, match="0 <= rank < world_size"):
        distributed.share_of([1], rank=2, world_size=2)


@pytest.mark.parametrize("temperature", [1e-38, 1e-45, 1e-300, 5e-324])
def test_a_tiny_temperature_samples_greedily_without_error(temperature):
    logits = torch.randn(6, 40, generator=torch.Generator().manual_seed(0)) * 3
    logits[0, 5] = float("-inf")  # a filtered token stays impossible
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        low = logits.to(dtype)
        assert torch.isfinite(torch.softmax(apply_temperature(low, temperature), -1)).all()
        for seed in range(3):
            drawn = sample_next(low, temperature=temperature, generator=torch.Generator().manual_seed(seed))
            assert torch.equal(drawn, greedy(low))
        assert torch.equal(sample_next(low, temperature=temperature, top_k=3, top_p=0.5), greedy(low))


def test_temperature_keeps_the_softmax_and_still_refuses_rows_without_a_distribution():
    logits = torch.randn(3, 10, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(torch.softmax(apply_temperature(logits, 0.7), -1), torch.softmax(logits / 0.7, -1))
    logits[1] = float("-inf")
    with pytest.raises(ValueError, match="row 1"):
        sample_next(logits, temperature=1e-38)


def test_a_char_tokenizer_with_a_lone_surrogate_is_refused_when_built():
    with pytest.raises(ValueError, match=r"'\\ud800'.*lone surrogate"):
        CharTokenizer.from_text("to be \ud800 or not")
    with pytest.raises(ValueError, match="lone surrogate"):
        CharTokenizer(["a", "\udfff"], specials=True)
    pair = "\ud83d\ude00".encode("utf-16", "surrogatepass").decode("utf-16")  # a joined pair: one character
    assert CharTokenizer.from_text("a" + pair).encode(pair) == [1]
