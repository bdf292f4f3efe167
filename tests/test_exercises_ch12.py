"""Chapter 12's checkers accept right answers and reject plausible wrong ones with a message naming the slip."""

import math

import pytest
import torch

from utils.exercises import ExerciseFailed
from utils.exercises.ch12 import (
    _beam,
    _greedy,
    _ranked,
    check_beam_loses,
    check_bleu_from_counts,
    check_bucketing,
    check_select_beams,
)
from utils.generate import beam_translate, greedy_translate
from utils.translation import batch_positions, bucket_batches


def in_given_order(lengths, max_tokens):
    """Batches within budget, but unsorted: the pairs as they come."""
    batches = [[]]
    for i in range(len(lengths)):
        if batches[-1] and batch_positions(lengths, batches[-1] + [i]) > max_tokens:
            batches.append([])
        batches[-1].append(i)
    return batches


def test_bucketing_checker():
    check_bucketing(lambda lengths, max_tokens: bucket_batches(lengths, max_tokens))
    with pytest.raises(ExerciseFailed, match="exactly one batch"):
        check_bucketing(lambda lengths, max_tokens: bucket_batches(lengths, max_tokens)[:-1])
    with pytest.raises(ExerciseFailed, match="more than max_tokens"):
        check_bucketing(lambda lengths, max_tokens: [list(range(len(lengths)))])
    with pytest.raises(ExerciseFailed, match="sort the pairs by length"):  # small enough, but unsorted
        check_bucketing(in_given_order)


# --- 12.2 ---------------------------------------------------------------------------------------


def bleu_from_counts(correct, total, c, r, *, smooth=True, doubling=True, k_is_order=False, bp=True,
                     bp_both_ways=False, geometric=True, early_stop=True, guard_c=True):
    """The solution, with switches that make the plausible mistakes."""
    if bp:
        if bp_both_ways:
            brevity = math.exp(1 - r / c) if c else 0.0
        elif c >= r:
            brevity = 1.0
        else:
            brevity = (math.exp(1 - r / c) if c > 0 else 0.0) if guard_c else math.exp(1 - r / c)
    else:
        brevity = 1.0
    if early_stop and not any(correct):
        return 0.0
    precisions, halvings = [], 1
    for n, (k, t) in enumerate(zip(correct, total), start=1):
        if t == 0 and early_stop:
            return 0.0
        if k == 0 and smooth:
            halvings = 2 ** n if k_is_order else (halvings * 2 if doubling else 2)
            precisions.append(1 / (halvings * t))
        else:
            precisions.append(k / t)
    if not geometric:
        return 100 * brevity * sum(precisions) / 4
    if min(precisions) == 0:
        return 0.0
    return 100 * brevity * math.exp(sum(math.log(p) for p in precisions) / 4)


def test_bleu_from_counts_checker():
    check_bleu_from_counts(bleu_from_counts)
    wrong = [
        (dict(geometric=False), "geometric mean"),
        (dict(bp_both_ways=True), r"not penalised: BP = 1 when c >= r"),
        (dict(bp=False), r"BP = exp\(1 - r / c\)"),
        (dict(smooth=False), r"1 / \(2 · total_4\)"),
        (dict(doubling=False), r"k counts the orders without a match, not n"),
        (dict(k_is_order=True), r"1 / \(2 · total_4\)"),  # 2^4 on the first zero order
        (dict(early_stop=False), "no 4-grams at all|no n-gram matches at all"),
        (dict(guard_c=False), r"c = 0.*guard the division"),
    ]
    for switches, message in wrong:
        with pytest.raises(ExerciseFailed, match=message):
            check_bleu_from_counts(lambda *a, s=switches: bleu_from_counts(*a, **s))
    with pytest.raises(ExerciseFailed, match="from 0 to 100"):
        check_bleu_from_counts(lambda *a: bleu_from_counts(*a) / 100)
    with pytest.raises(ExerciseFailed, match="expected one number"):
        check_bleu_from_counts(lambda *a: "31.2")


# --- 12.3 ---------------------------------------------------------------------------------------


def select_beams(log_p_sum, log_p):
    B, K, V = log_p.shape
    sums, best = (log_p_sum[..., None] + log_p).view(B, K * V).topk(K, dim=-1)
    return sums, best // V, best % V


def test_select_beams_checker():
    check_select_beams(select_beams)

    def own_best(log_p_sum, log_p):  # each beam extends its own best token
        values, tokens = (log_p_sum[..., None] + log_p).max(-1)
        return values, torch.arange(log_p.shape[1]).expand_as(tokens), tokens

    def by_new_token(log_p_sum, log_p):  # the running sum forgotten when ranking
        B, K, V = log_p.shape
        best = log_p.view(B, K * V).topk(K, dim=-1).indices
        return (log_p_sum[..., None] + log_p).view(B, K * V).gather(1, best), best // V, best % V

    def swapped(log_p_sum, log_p):
        sums, beam, token = select_beams(log_p_sum, log_p)
        return sums, token, beam

    def unsorted(log_p_sum, log_p):
        sums, beam, token = select_beams(log_p_sum, log_p)
        return sums.flip(-1), beam.flip(-1), token.flip(-1)

    def per_beam_topk(log_p_sum, log_p):  # (B, K, K): topk over V, not over K·V
        sums, tokens = (log_p_sum[..., None] + log_p).topk(log_p.shape[1], dim=-1)
        return sums, tokens, tokens

    cases = [(own_best, "its own best continuation"), (by_new_token, "running sum plus it"),
             (swapped, "swapped"), (unsorted, "best first"), (per_beam_topk, r"shape \(3, 3, 3\)"),
             (lambda s, p: select_beams(s, p)[0], "three tensors")]
    for wrong, message in cases:
        with pytest.raises(ExerciseFailed, match=message):
            check_select_beams(wrong)


def test_select_beams_case_keeps_three_children_of_one_beam():
    """The checker's later step really makes one beam's children win, which the own-best slip cannot do."""
    log_p_sum = torch.tensor([[-0.5, -3.0, -4.0]])
    log_p = torch.log_softmax(torch.randn(1, 3, 7), -1)
    log_p[0, 0] = torch.log_softmax(torch.tensor([9.0, 8.8, 8.6, 0, 0, 0, 0]), -1)
    assert [k for _, k, _ in _ranked(log_p_sum, log_p, 3)[0]] == [0, 0, 0]


# --- 12.4 ---------------------------------------------------------------------------------------

#                      <EOS>   a     b     c
SOLUTION = torch.tensor([[0.0, 0.40, 0.35, 0.25],  # after <SOS>: greedy takes a
                         [0.3, 0.00, 0.30, 0.40],  # after a: greedy takes c (0.4 · 0.4 = 0.16 so far)
                         [0.0, 0.52, 0.48, 0.00],  # after b: 0.35 · 0.52 and 0.35 · 0.48 beat 0.16
                         [1.0, 0.00, 0.00, 0.00]])  # after c: <EOS>; greedy ends at log 0.16


class Bigram(torch.nn.Module):
    """The table as an encoder–decoder for utils.generate: <PAD>=0, <SOS>=1, <EOS>=2, a, b, c = 3, 4, 5."""

    def __init__(self, table):
        super().__init__()
        full = torch.zeros(6, 6)
        full[1:2, 2:] = table[0:1]  # after <SOS>
        full[3:, 2:] = table[1:]  # after a, b, c
        full[0, 2] = full[2, 2] = 1.0  # after <PAD> or <EOS> (never read by the searches)
        self.log_table = torch.nn.Parameter(full.log(), requires_grad=False)

    def encode(self, src, src_key_padding_mask=None):
        return torch.zeros(src.shape[0], 1, 1)

    def decode(self, tgt_in, memory, memory_key_padding_mask=None, cache=None):
        return self.log_table[tgt_in]  # (B, T, V): the logits depend on the last token only


def test_beam_loses_checker_and_the_kept_beam_search_agrees():
    check_beam_loses(lambda: SOLUTION.clone())
    greedy_ids, greedy_total = _greedy(SOLUTION.double(), 10)
    beam_ids, beam_total = _beam(SOLUTION.double(), 2, 10)
    assert greedy_ids == [1, 3, 0] and greedy_total == pytest.approx(math.log(0.16))
    assert beam_total < greedy_total
    model, src = Bigram(SOLUTION), torch.tensor([[1]])
    kept_greedy = greedy_translate(model, src, sos_id=1, eos_id=2, pad_id=0, max_new_tokens=10)
    kept_beam, score = beam_translate(model, src, sos_id=1, eos_id=2, beam_size=2, alpha=0.0,
                                      max_new_tokens=10, return_scores=True)
    assert kept_greedy[0].tolist() == [1, 3, 5, 2]  # <SOS> a c <EOS>
    assert [i - 2 if i > 2 else 0 for i in kept_beam[0, 1:].tolist()] == beam_ids  # the same search
    assert float(score) == pytest.approx(beam_total, abs=1e-5) and float(score) < math.log(0.16)


def test_beam_loses_checker_rejects():
    uniform_after_sos = SOLUTION.clone()
    uniform_after_sos[2] = torch.tensor([0.5, 0.5, 0.0, 0.0])  # b can end at once: 0.35 · 0.5 > 0.16
    never_ends = torch.tensor([[0.0, 1.0, 0.0, 0.0]] * 4)  # a a a ...
    not_a_distribution = SOLUTION.clone()
    not_a_distribution[1, 1] = 0.2
    cases = [(uniform_after_sos, "did not lose"), (never_ends, "never writes <EOS>"),
             (not_a_distribution, r"row 1 \(after a\) sums to 1.2000"), (-SOLUTION, "cannot be negative"),
             (SOLUTION[:3], r"shape \(3, 4\)")]
    for table, message in cases:
        with pytest.raises(ExerciseFailed, match=message):
            check_beam_loses(lambda t=table: t)
