"""Checkers for chapter 12's exercises: batches by length, BLEU from its counts with sacreBLEU's smoothing,
one step of a batched beam search, and a model on which beam search loses to greedy decoding.

Each checker compares the reader's answer with an independent reference: sacreBLEU's own
``compute_bleu``, a brute-force ranking of every candidate in plain Python, and a greedy decoder
and beam search written here with lists (not the kept ``utils.generate``).
"""

from __future__ import annotations

import math

import torch

from utils.exercises import ExerciseFailed, checker, expect, expect_number, expect_shape


def _lengths(n: int, seed: int) -> list[tuple[int, int]]:
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(2, 30, (n,), generator=g)
    return [(int(s), max(1, int(s) + int(d))) for s, d in zip(src, torch.randint(-3, 4, (n,), generator=g))]


@checker("Exercise 12.1 — batches by length")
def check_bucketing(make_batches) -> None:
    """``make_batches(lengths, max_tokens)``: lists of indices, each pair once, each batch within budget, little padding."""
    from utils.translation import batch_positions, bucket_batches, padding_share

    for n, max_tokens, seed in ((7, 80, 0), (500, 600, 1), (2000, 2000, 2)):
        lengths = _lengths(n, seed)
        batches = [list(map(int, batch)) for batch in make_batches(list(lengths), max_tokens)]
        seen = sorted(i for batch in batches for i in batch)
        expect(all(len(batch) > 0 for batch in batches), "an empty batch came back: every batch needs a pair")
        expect(seen == list(range(n)), f"with {n} pairs every index 0..{n - 1} must be in exactly one batch; "
               f"{len(seen)} indices came back, {len(set(seen))} of them different")
        over = [b for b in batches if batch_positions(lengths, b) > max_tokens]
        expect(not over, f"a batch of {len(over[0]) if over else 0} pairs needs "
               f"{batch_positions(lengths, over[0]) if over else 0} padded positions, more than "
               f"max_tokens={max_tokens}: count B · (longest source + longest target)")
        reference = padding_share(lengths, bucket_batches(lengths, max_tokens))
        yours = padding_share(lengths, batches)
        expect(yours <= max(2 * reference, 0.05),
               f"{yours:.0%} of the padded positions are padding (sorting by length gives {reference:.0%}): "
               "sort the pairs by length before cutting them into batches")


# --- 12.2: BLEU from its counts, smoothed as sacreBLEU does ----------------------------------------

# (correct, total, c, r, what a wrong answer on this case most likely got wrong), simplest first
_BLEU_CASES = [
    ([30, 20, 12, 6], [40, 36, 32, 28], 40, 40,
     "with every count above 0 and c = r, BLEU = 100 · exp(mean of log p_n), p_n = correct_n / total_n "
     "(a geometric mean: the mean of the logs, not of the precisions)"),
    ([30, 20, 12, 6], [40, 36, 32, 28], 40, 35,
     "translations longer than the references (c > r) are not penalised: BP = 1 when c >= r"),
    ([30, 20, 12, 6], [40, 36, 32, 28], 40, 50,
     "translations shorter than the references (c < r) get BP = exp(1 - r / c)"),
    ([9, 4, 1, 0], [12, 10, 8, 6], 12, 12,
     "no 4-gram matches: sacreBLEU's 'exp' smoothing uses p_4 = 1 / (2 · total_4) instead of 0 (the first "
     "order with no match gets a half of one match)"),
    ([9, 2, 0, 0], [12, 10, 8, 6], 12, 12,
     "no 3-gram and no 4-gram matches: the k-th order with no match gets 1 / (2^k · total_n), so p_3 = "
     "1 / (2 · total_3) and p_4 = 1 / (4 · total_4); k counts the orders without a match, not n"),
    ([5, 2, 1, 0], [6, 4, 2, 0], 6, 6,
     "no 4-grams at all (every translation is shorter than 4 words): total_4 = 0, so p_4 = 0 and BLEU = 0; "
     "there is nothing to smooth"),
    ([0, 0, 0, 0], [7, 5, 3, 1], 7, 9,
     "no n-gram matches at all: BLEU = 0 (sacreBLEU stops before smoothing)"),
    ([0, 0, 0, 0], [0, 0, 0, 0], 0, 9,
     "nothing was translated (c = 0): BP = 0 and BLEU = 0 (guard the division r / c)"),
]


def _sacrebleu_from_counts(correct, total, c, r) -> float:
    from sacrebleu.metrics import BLEU

    return BLEU.compute_bleu(list(correct), list(total), c, r, smooth_method="exp").score


@checker("Exercise 12.2 — BLEU from its counts, smoothed as sacreBLEU does")
def check_bleu_from_counts(bleu_from_counts) -> None:
    """``bleu_from_counts(correct, total, c, r)``: corpus BLEU (0..100) from clipped matches and n-gram totals
    for n = 1..4, with the brevity penalty and sacreBLEU's default 'exp' smoothing; compared with
    sacreBLEU's own ``BLEU.compute_bleu``."""
    for correct, total, c, r, hint in _BLEU_CASES:
        call = f"bleu_from_counts({correct}, {total}, c={c}, r={r})"
        try:
            got = expect_number(bleu_from_counts(list(correct), list(total), c, r), call)
        except (ZeroDivisionError, ValueError) as error:  # log(0), r / 0, 1 / 0
            raise ExerciseFailed(f"{call} raised {type(error).__name__}: {error}. {hint}") from None
        expected = _sacrebleu_from_counts(correct, total, c, r)
        expect(expected == 0 or abs(100 * got - expected) > 1e-6 * expected,
               f"{call} = {got:.6f}, sacreBLEU gives {expected:.4f}: BLEU is reported from 0 to 100 "
               "(multiply by 100)")
        expect(math.isfinite(got) and abs(got - expected) < 1e-6 * max(1.0, expected),
               f"{call} = {got:.4f}, sacreBLEU gives {expected:.4f}: {hint}")


# --- 12.3: one step of a batched beam search ----------------------------------------------------


def _ranked(log_p_sum: torch.Tensor, log_p: torch.Tensor, K: int):
    """The K best of each sentence's K·V candidates, by brute force: (sums, beams, tokens) as lists."""
    B, _, V = log_p.shape
    out = []
    for b in range(B):
        candidates = [(float(log_p_sum[b, k]) + float(log_p[b, k, v]), k, v) for k in range(K) for v in range(V)]
        candidates.sort(key=lambda c: c[0], reverse=True)
        out.append(candidates[:K])
    return out


@checker("Exercise 12.3 — one step of a batched beam search")
def check_select_beams(select_beams) -> None:
    """``select_beams(log_p_sum, log_p)`` with log_p_sum (B, K) and log_p (B, K, V): the K best candidates of
    each sentence as (sums (B, K), beam (B, K), token (B, K)), best first, compared with a brute-force
    ranking of all K·V candidates."""
    g = torch.Generator().manual_seed(12)
    B, K, V = 3, 3, 7
    later = -torch.rand(B, K, generator=g).cumsum(-1) * 2  # three live beams, best first
    later[0] = torch.tensor([-0.5, -3.0, -4.0])
    first = torch.zeros(B, K)
    first[:, 1:] = float("-inf")  # the first step: one real beam (<SOS>), the others do not exist yet
    for name, log_p_sum in (("a later step", later), ("the first step (beams 1 and 2 at -inf)", first)):
        log_p = torch.log_softmax(torch.randn(B, K, V, generator=g) * 2, -1)
        log_p[0, 0] = torch.log_softmax(torch.tensor([9.0, 8.8, 8.6, 0, 0, 0, 0]), -1)  # three strong children
        log_p[1, 2] = torch.log_softmax(torch.tensor([0, 0, 0, 0, 0, 9.0, 8.9]), -1)  # strong, but on a weak beam
        result = select_beams(log_p_sum.clone(), log_p.clone())
        expect(isinstance(result, tuple | list) and len(result) == 3,
               f"return three tensors (sums, beam, token), got {type(result).__name__}")
        sums, beam, token = result
        for tensor, what in ((sums, "sums"), (beam, "beam"), (token, "token")):
            expect_shape(tensor, (B, K), f"{what} at {name}")
        sums, beam, token = sums.double(), beam.long(), token.long()

        def as_tensors(ranked):
            return (torch.tensor([[c[0] for c in row] for row in ranked], dtype=torch.float64),
                    torch.tensor([[c[1] for c in row] for row in ranked]),
                    torch.tensor([[c[2] for c in row] for row in ranked]))

        want_sums, want_beam, want_token = as_tensors(_ranked(log_p_sum, log_p, K))
        if not torch.allclose(sums, want_sums, atol=1e-5):
            expect(not torch.allclose(sums.sort(-1, descending=True).values, want_sums, atol=1e-5),
                   f"at {name} you have the K best candidates but not in order: return them best first "
                   "(topk sorts them)")
            own_best = (log_p_sum[..., None] + log_p).amax(-1).double()  # each beam's best continuation
            expect(not torch.allclose(sums.sort(-1).values, own_best.sort(-1).values, atol=1e-5),
                   "each beam kept only its own best continuation; the K best of all K·V candidates may come "
                   "from one beam (sentence 0 keeps three children of beam 0): rank the flattened (B, K·V) "
                   "candidates with one topk")
            _, alone_beam, alone_token = as_tensors(_ranked(torch.zeros(B, K), log_p, K))
            expect(not (torch.equal(beam, alone_beam) and torch.equal(token, alone_token)),
                   "you ranked the candidates by the new token's log-probability alone; a candidate's score "
                   "is its beam's running sum plus it: log_p_sum[..., None] + log_p")
            expect(False, f"the sums at {name} are not the K best candidates': yours {sums[0].tolist()}, "
                   f"expected {want_sums[0].tolist()} for sentence 0 (best first)")
        expect(not (torch.equal(beam, want_token) and torch.equal(token, want_beam)),
               "beam and token are swapped: in the flattened K·V candidates, index // V is the beam and "
               "index % V the token")
        expect(torch.equal(beam, want_beam) and torch.equal(token, want_token),
               f"at {name} the sums are right but the beams or tokens are not: yours beam {beam[0].tolist()}, "
               f"token {token[0].tolist()}; expected beam {want_beam[0].tolist()}, token "
               f"{want_token[0].tolist()} for sentence 0 (index // V is the beam, index % V the token)")


# --- 12.4: a model on which beam search loses to greedy -------------------------------------------

BIGRAM_WORDS = ["<EOS>", "a", "b", "c"]  # the columns: what comes next
BIGRAM_CONTEXTS = ["<SOS>", "a", "b", "c"]  # the rows: the token before it
EOS = 0


def _step_log_p(table: torch.Tensor, previous: int) -> list[float]:
    """log p(next | previous) over <EOS>, a, b, c; ``previous`` is 0 for <SOS>, else the word's column."""
    return [math.log(p) if p > 0 else -math.inf for p in table[previous].tolist()]


def _greedy(table: torch.Tensor, max_new_tokens: int) -> tuple[list[int], float]:
    ids, total, previous = [], 0.0, 0
    for _ in range(max_new_tokens):
        log_p = _step_log_p(table, previous)
        token = max(range(len(log_p)), key=lambda v: log_p[v])
        ids.append(token)
        total += log_p[token]
        if token == EOS:
            break
        previous = token
    return ids, total


def _beam(table: torch.Tensor, K: int, max_new_tokens: int) -> tuple[list[int], float]:
    """Plain beam search on log-probabilities (alpha = 0), written with lists."""
    beams = [([], 0.0, False)]  # (tokens, sum of log p, ended)
    for _ in range(max_new_tokens):
        if all(ended for _, _, ended in beams):
            break
        candidates = []
        for ids, total, ended in beams:
            if ended:
                candidates.append((ids, total, True))
                continue
            log_p = _step_log_p(table, ids[-1] if ids else 0)
            candidates += [(ids + [v], total + lp, v == EOS) for v, lp in enumerate(log_p) if lp > -math.inf]
        candidates.sort(key=lambda c: c[1], reverse=True)
        beams = candidates[:K]
    ids, total, _ = max(beams, key=lambda b: b[1])
    return ids, total


def _words(ids: list[int]) -> str:
    return " ".join(BIGRAM_WORDS[i] for i in ids)


@checker("Exercise 12.4 — make beam search lose")
def check_beam_loses(next_word_table) -> None:
    """``next_word_table()``: a (4, 4) tensor of probabilities, row = the token before (<SOS>, a, b, c),
    column = the next token (<EOS>, a, b, c), on which a beam of 2 ends with a lower log-probability
    than greedy decoding (alpha = 0, at most 10 tokens)."""
    table = next_word_table()
    expect_shape(table, (4, 4), "your table")
    table = table.double()
    expect(bool((table >= 0).all()) and bool(torch.isfinite(table).all()),
           "probabilities cannot be negative (or inf/NaN)")
    sums = table.sum(-1)
    for i in range(4):
        expect(abs(float(sums[i]) - 1) < 1e-6, f"row {i} (after {BIGRAM_CONTEXTS[i]}) sums to {float(sums[i]):.4f}; "
               "each row is a distribution over the next token and must sum to 1")
    greedy_ids, greedy_total = _greedy(table, 10)
    expect(greedy_ids[-1] == EOS, f"greedy decoding never writes <EOS> within 10 tokens ({_words(greedy_ids)} ...): "
           "give it an ending, so the two searches have finished translations to compare")
    beam_ids, beam_total = _beam(table, 2, 10)
    expect(beam_total < greedy_total - 1e-9,
           f"beam 2 found {_words(beam_ids)!r} (log p = {beam_total:.3f}), greedy {_words(greedy_ids)!r} "
           f"(log p = {greedy_total:.3f}): the beam did not lose. For it to lose, greedy's path must drop out of "
           "the 2 beams (at some step two other candidates must beat greedy's prefix), and everything those two "
           "lead to must end lower than greedy's translation")
