"""utils.generate.beam_translate: width 1 is greedy, a plain beam search (it can end below
greedy: no fallback), the scores it reports are the model's (teacher-forced), and the KV
cache changes nothing."""

import math

import pytest
import torch

from utils.generate import beam_translate, greedy_translate, length_penalty, translation_scores
from utils.models import Transformer, TransformerConfig

SOS, EOS, PAD = 1, 2, 0


def small_translator(seed: int) -> Transformer:
    torch.manual_seed(seed)
    model = Transformer(TransformerConfig(src_vocab_size=20, tgt_vocab_size=24, C=16, n_heads=2, max_len=24))
    with torch.no_grad():  # a longer <EOS> vector (tied output layer): translations end, at different lengths
        model.tgt_embedding.weight[EOS] *= 3
    return model.eval()


def sources(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(3, 20, (12, 7), generator=g)
    src[3, 4:] = PAD  # a padded sentence
    return src


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_width_one_is_greedy(seed):
    model, src = small_translator(seed), sources(seed)
    greedy = greedy_translate(model, src, sos_id=SOS, eos_id=EOS, pad_id=PAD, max_new_tokens=15)
    for alpha in (0.0, 0.6):
        beam = beam_translate(model, src, sos_id=SOS, eos_id=EOS, pad_id=PAD, beam_size=1, alpha=alpha,
                              max_new_tokens=15)
        n = min(greedy.shape[1], beam.shape[1])  # the longer one only adds padding
        assert torch.equal(greedy[:, :n], beam[:, :n])
        assert (greedy[:, n:] == PAD).all() and (beam[:, n:] == PAD).all()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_wider_beam_reports_true_scores(seed):
    model, src = small_translator(seed), sources(seed)
    lengths_seen = set()
    for alpha in (0.0, 0.6, 1.0):
        greedy = beam_translate(model, src, sos_id=SOS, eos_id=EOS, beam_size=1, alpha=alpha, max_new_tokens=15)
        lengths_seen |= set(((greedy == EOS).float().argmax(1)).tolist())
        for K in (2, 3, 5):
            out, scores = beam_translate(model, src, sos_id=SOS, eos_id=EOS, beam_size=K, alpha=alpha,
                                         max_new_tokens=15, return_scores=True)
            teacher_forced = translation_scores(model, src, out, eos_id=EOS, alpha=alpha)
            torch.testing.assert_close(scores, teacher_forced, atol=1e-4, rtol=1e-4)
    assert len(lengths_seen) > 1  # the test met translations of different lengths


# A decoder whose next-token probabilities depend only on the last token (a Markov chain),
# written so that a beam of 2 loses the greedy path: after <SOS>, "a" (0.5) is greedy's
# choice, but its best child "a d" (0.12) falls behind both children of "b" (0.13 each),
# which then end at 0.117 < greedy's 0.12.
A, B_, C_, D, E, F, G = 3, 4, 5, 6, 7, 8, 9
NEXT = {SOS: {A: 0.5, B_: 0.26, C_: 0.24}, A: {D: 0.24, EOS: 0.19, E: 0.19, C_: 0.19, G: 0.19},
        B_: {F: 0.5, G: 0.5}, D: {EOS: 1.0}, F: {EOS: 0.9, G: 0.1}, G: {EOS: 0.9, F: 0.1}}


class MarkovTranslator(torch.nn.Module):
    def __init__(self):
        super().__init__()
        table = torch.full((10, 10), 1e-9)
        table[:, EOS] = 1.0  # tokens without a row end the sentence
        for token, nexts in NEXT.items():
            table[token] = 1e-9
            for n, p in nexts.items():
                table[token, n] = p
        self.register_buffer("log_table", (table / table.sum(-1, keepdim=True)).log())

    def encode(self, src, src_key_padding_mask=None):
        return torch.zeros(*src.shape, 1, device=src.device)

    def decode(self, tgt_in, memory, memory_key_padding_mask=None, cache=None):
        return self.log_table[tgt_in]  # (B, T, V)


def test_a_plain_beam_can_end_below_greedy():
    model, src = MarkovTranslator(), torch.tensor([[3, 4]])
    for alpha in (0.0, 0.6):
        greedy, greedy_score = beam_translate(model, src, sos_id=SOS, eos_id=EOS, beam_size=1, alpha=alpha,
                                              max_new_tokens=6, return_scores=True)
        beam, beam_score = beam_translate(model, src, sos_id=SOS, eos_id=EOS, beam_size=2, alpha=alpha,
                                          max_new_tokens=6, return_scores=True)
        assert greedy[0, :4].tolist() == [SOS, A, D, EOS]
        assert beam[0, :4].tolist() in ([SOS, B_, F, EOS], [SOS, B_, G, EOS])  # not greedy's path
        penalty = length_penalty(torch.tensor(3.0), alpha).item()
        assert greedy_score.item() == pytest.approx(math.log(0.5 * 0.24) / penalty, abs=1e-4)
        assert beam_score.item() == pytest.approx(math.log(0.26 * 0.5 * 0.9) / penalty, abs=1e-4)
        assert beam_score.item() < greedy_score.item()
    # a beam of 3 keeps "c", whose <EOS> (0.24) beats greedy's 0.12
    assert beam_translate(model, src, sos_id=SOS, eos_id=EOS, beam_size=3)[0, :3].tolist() == [SOS, C_, EOS]


def test_kv_cache_gives_the_same_translations():
    model, src = small_translator(5), sources(5)
    for K in (1, 4):
        plain = beam_translate(model, src, sos_id=SOS, eos_id=EOS, beam_size=K, max_new_tokens=12,
                               return_scores=True)
        cached = beam_translate(model, src, sos_id=SOS, eos_id=EOS, beam_size=K, max_new_tokens=12,
                                return_scores=True, use_cache=True)
        assert torch.equal(plain[0], cached[0])
        torch.testing.assert_close(plain[1], cached[1], atol=1e-5, rtol=1e-5)


def test_a_beam_as_wide_as_every_prefix_is_exhaustive_search():
    """With V = 5 and at most 2 new tokens there are 25 translations: a beam of 25 finds the best."""
    torch.manual_seed(7)
    model = Transformer(TransformerConfig(src_vocab_size=10, tgt_vocab_size=5, C=16, n_heads=2, max_len=8)).eval()
    src = torch.tensor([[4, 5, 6]])
    everything = torch.tensor([[SOS, a, b] for a in range(5) for b in range(5)])  # (25, 3)
    best = translation_scores(model, src.expand(25, -1), everything, eos_id=EOS, alpha=0.0).max()
    _, found = beam_translate(model, src, sos_id=SOS, eos_id=EOS, beam_size=25, alpha=0.0, max_new_tokens=2,
                              return_scores=True)
    assert found.item() == pytest.approx(best.item(), abs=1e-5)


def test_length_penalty_and_bad_arguments():
    assert length_penalty(torch.tensor(1.0), 0.6).item() == pytest.approx(1.0)
    assert length_penalty(torch.tensor(7.0), 1.0).item() == pytest.approx(2.0)
    model, src = small_translator(0), sources(0)
    with pytest.raises(ValueError, match="beam_size"):
        beam_translate(model, src, sos_id=SOS, eos_id=EOS, beam_size=0)
    with pytest.raises(ValueError, match=r"\(B, T_enc\)"):
        beam_translate(model, src[0], sos_id=SOS, eos_id=EOS)
    for alpha in (-0.6, float("nan"), float("inf"), "0.6"):
        with pytest.raises(ValueError, match=r"alpha must be a finite number >= 0"):
            beam_translate(model, src, sos_id=SOS, eos_id=EOS, beam_size=2, alpha=alpha)
