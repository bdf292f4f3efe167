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


# The same classes elsewhere in the decoding and timing helpers: a bool or a float where an
# integer is meant, a non-finite number, each named before any work starts.


def test_beam_and_sampling_settings_are_checked_like_every_other_argument():
    from utils.generate import beam_translate, generate, translation_scores
    from utils.models import GPT, GPTConfig, Transformer, TransformerConfig

    model = Transformer(TransformerConfig(src_vocab_size=20, tgt_vocab_size=24, C=16, n_heads=2, max_len=24)).eval()
    src = torch.tensor([[3, 4, 5]])
    for name, value in (("beam_size", True), ("beam_size", 2.0), ("max_new_tokens", True), ("max_new_tokens", 5.5),
                        ("sos_id", 1.0), ("eos_id", None), ("pad_id", -1)):
        settings = {"sos_id": 1, "eos_id": 2, name: value}
        with pytest.raises(ValueError, match=rf"^{name} must be"):
            beam_translate(model, src, **settings)
    with pytest.raises(ValueError, match="^alpha must be a finite number"):
        translation_scores(model, src, torch.tensor([[1, 5, 2]]), eos_id=2, alpha=float("nan"))
    gpt = GPT(GPTConfig(vocab_size=30, block_size=8, C=16, n_heads=2, n_layers=1)).eval()
    for name, value in (("temperature", True), ("temperature", float("inf")), ("top_p", True)):
        with pytest.raises(ValueError, match=rf"^{name} must be"):
            generate(gpt, torch.tensor([[1]]), 2, **{name: value})


def test_translate_checks_its_batch_size_before_any_work():
    from utils.models import Transformer, TransformerConfig
    from utils.tokenizers import BPETokenizer
    from utils.translation import translate

    tokenizer = BPETokenizer([], specials=True)
    model = Transformer(TransformerConfig(src_vocab_size=tokenizer.vocab_size, tgt_vocab_size=tokenizer.vocab_size,
                                          C=16, n_heads=2, n_encoder_layers=1, n_decoder_layers=1, pad_id=0)).eval()
    for name, value in (("batch_size", 0), ("batch_size", 2.5), ("extra_tokens", -1), ("beam_size", 0)):
        with pytest.raises(ValueError, match=rf"^{name} must be"):
            translate(model, tokenizer, ["ein Hund"], **{name: value})


def test_timing_helpers_name_bad_counts():
    from utils.profiling import seconds_per_call

    for name, value in (("repeat", 2.5), ("warmup", True), ("repeat", 0)):
        with pytest.raises(ValueError, match=rf"^{name} must be"):
            seconds_per_call(lambda: None, **{name: value})


def test_a_device_named_in_the_environment_is_checked_where_it_is_read(monkeypatch):
    from utils import environment

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("LLM_FROM_SCRATCH_DEVICE", "cudaa")
    with pytest.raises(ValueError, match=r"^LLM_FROM_SCRATCH_DEVICE='cudaa' is not a device"):
        environment.pick_device()
    monkeypatch.setenv("LLM_FROM_SCRATCH_DEVICE", "cuda")
    with pytest.raises(ValueError, match=r"^LLM_FROM_SCRATCH_DEVICE='cuda': this machine has no CUDA GPU"):
        environment.pick_device()
    with pytest.raises(ValueError, match=r"^device='cuda:0': this machine has no CUDA GPU"):
        environment.pick_device("cuda:0")
    monkeypatch.setenv("LLM_FROM_SCRATCH_DEVICE", "cpu")
    assert environment.pick_device() == torch.device("cpu")
