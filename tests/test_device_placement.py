"""Decoding helpers take the device from the model (issue 18, item 1).

A chapter that trains on a GPU and then decodes a batch built on the CPU must not
need ``.to(device)`` by hand. On this CPU-only machine a pretend accelerator
(tests/pretend_device.py) stands in for the GPU: a model moved there fails on CPU
inputs exactly as a CUDA model does, unless the helper moves them.
"""

import pytest
import torch

from tests.pretend_device import pretend_device
from utils.generate import beam_translate, generate, greedy_translate, model_device, translation_scores
from utils.models import GPT, GPTConfig, Transformer, TransformerConfig

SOS, EOS, PAD = 1, 2, 0


def translator():
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(src_vocab_size=20, tgt_vocab_size=24, C=16, n_heads=2, max_len=24))
    with torch.no_grad():
        model.tgt_embedding.weight[EOS] *= 3  # translations end, at different lengths
    return model.eval()


def cpu_batch():
    src = torch.randint(3, 20, (3, 6), generator=torch.Generator().manual_seed(1))
    src[1, 4:] = PAD
    return src


def test_the_pretend_device_fails_like_a_gpu_on_cpu_inputs():
    model = translator()
    with pretend_device() as device:
        model.to(device)
        with pytest.raises(RuntimeError, match="same device"):
            model.encode(cpu_batch())


@pytest.mark.parametrize("use_cache", [False, True])
def test_translation_helpers_move_cpu_inputs_to_the_models_device(use_cache):
    model, src = translator(), cpu_batch()
    expected = {
        "greedy": greedy_translate(model, src, sos_id=SOS, eos_id=EOS, max_new_tokens=10, use_cache=use_cache),
        "beam": beam_translate(model, src, sos_id=SOS, eos_id=EOS, beam_size=3, max_new_tokens=10,
                               use_cache=use_cache, return_scores=True),
    }
    expected["scores"] = translation_scores(model, src, expected["greedy"], eos_id=EOS, alpha=0.6)
    with pretend_device() as device:
        model.to(device)
        assert model_device(model) == device
        greedy = greedy_translate(model, src, sos_id=SOS, eos_id=EOS, max_new_tokens=10, use_cache=use_cache)
        beam, scores = beam_translate(model, src, sos_id=SOS, eos_id=EOS, beam_size=3, max_new_tokens=10,
                                      use_cache=use_cache, return_scores=True)
        teacher_forced = translation_scores(model, src, greedy.cpu(), eos_id=EOS, alpha=0.6,
                                            src_key_padding_mask=src == PAD)
        assert greedy.device == beam.device == device  # results stay where the model is
        greedy, beam, scores, teacher_forced = (t.cpu() for t in (greedy, beam, scores, teacher_forced))
    assert torch.equal(greedy, expected["greedy"])
    assert torch.equal(beam, expected["beam"][0])
    torch.testing.assert_close(scores, expected["beam"][1])
    torch.testing.assert_close(teacher_forced, expected["scores"])


@pytest.mark.parametrize("use_cache", [False, True])
def test_generate_moves_the_prompt_to_the_models_device(use_cache):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=30, block_size=8, C=16, n_heads=2, n_layers=1)).eval()
    prompt = torch.tensor([[3, 4, 5]])
    expected = generate(model, prompt, 12, temperature=0, use_cache=use_cache)
    with pretend_device() as device:
        model.to(device)
        out = generate(model, prompt, 12, temperature=0, use_cache=use_cache)
        assert out.device == device
        out = out.cpu()
    assert torch.equal(out, expected)


def test_model_device_of_a_model_without_weights_is_the_inputs():
    assert model_device(torch.nn.Identity(), torch.device("meta")) == torch.device("meta")
    assert model_device(torch.nn.Identity()) == torch.device("cpu")


def test_translate_and_the_heatmaps_take_tensors_from_the_models_device():
    from utils.plots import attention_heatmaps, heatmap
    from utils.tokenizers import BPETokenizer
    from utils.translation import translate

    tokenizer = BPETokenizer([], specials=True)
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(src_vocab_size=tokenizer.vocab_size, tgt_vocab_size=tokenizer.vocab_size,
                                          C=16, n_heads=2, n_encoder_layers=1, n_decoder_layers=1, pad_id=0)).eval()
    sentences = ["ein Hund", "zwei Katzen im Garten"]
    expected = translate(model, tokenizer, sentences, beam_size=2, extra_tokens=2)
    with pretend_device() as device:
        model.to(device)
        assert translate(model, tokenizer, sentences, beam_size=2, extra_tokens=2) == expected
        weights = torch.softmax(torch.randn(2, 3, 4), -1).to(device)
        assert weights.device == device
        heatmap(weights[0])
        figure = attention_heatmaps(weights, list("abcd"), list("xyz"))
    assert len(figure.axes) == 3  # two heads and the colour bar


def test_forward_passes_read_nothing_back_from_the_device():
    """check_token_ids must not .item() a GPU tensor at every forward: a host sync per step."""
    from utils.models import PackedGPT

    torch.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=30, block_size=8, C=16, n_heads=2, n_layers=1)).eval()
    model = translator()
    reads = []
    with pretend_device(log=reads) as device:
        gpt.to(device), model.to(device)
        ids = torch.tensor([[3, 4, 5]]).to(device)
        gpt(ids)
        packed, cache = PackedGPT(gpt), gpt.new_cache()
        packed(ids, cache=cache), packed(ids[:, :1], cache=cache)  # the prompt, then a cached step
        memory = model.encode(ids)
        model.decode(ids, memory)
        assert reads == []
        ids.max().item()  # the log does see a read
        assert len(reads) == 1


def test_ids_are_checked_on_the_cpu_before_they_go_to_the_model():
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=30, block_size=8, C=16, n_heads=2, n_layers=1)).eval()
    model = translator()
    with pretend_device() as device:
        gpt.to(device), model.to(device)
        with pytest.raises(ValueError, match=r"idx holds token id 30 .* vocab_size V=30"):
            generate(gpt, torch.tensor([[3, 30]]), 2)
        for decode in (greedy_translate, beam_translate):
            with pytest.raises(ValueError, match=r"src holds token id -1 .* V=20"):
                decode(model, torch.tensor([[3, -1]]), sos_id=SOS, eos_id=EOS)
    with pytest.raises(ValueError, match=r"idx holds token id 30"):  # on the CPU the model checks
        gpt(torch.tensor([[3, 30]]))


def test_loss_curves_take_histories_of_device_tensors():
    """A trainer that keeps its losses as tensors on the GPU (no per-step host sync) can be plotted."""
    from utils.plots import loss_curves

    with pretend_device() as device:
        history = {"train": torch.tensor([3.0, 2.0, 1.5]).to(device),
                   "val": [torch.tensor(3.1).to(device), torch.tensor(2.2).to(device)]}
        ax = loss_curves(history, steps={"train": [0, 1, 2], "val": [0, 2]})
    drawn = [[round(float(y), 4) for y in line.get_ydata()] for line in ax.lines[:2]]
    assert drawn == [[3.0, 2.0, 1.5], [3.1, 2.2]]
