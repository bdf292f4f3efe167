"""BLEU, the field's score for machine translation, from scratch (chapter 12).

BLEU (Papineni et al., 2002) compares a system's translations (*hypotheses*) with
human ones (*references*) over a whole test set:

1. both sides are split into words by one fixed tokenizer (:func:`tokenize_13a`,
   the "13a" rules of the WMT scoring script that sacreBLEU uses by default);
2. for n = 1..4 the *modified n-gram precision* p_n: each hypothesis n-gram counts
   as correct at most as often as it occurs in its reference ("the the the" earns
   one "the"), summed over the corpus, divided by the corpus's hypothesis n-grams;
3. the *brevity penalty* BP = exp(1 - r/c) when the hypotheses' total length c is
   below the references' r (precision alone would reward saying little), else 1;
4. BLEU = 100 · BP · exp(mean of log p_n), the geometric mean of the precisions.

Corpus-level means the counts are summed before dividing: BLEU is not the mean of
per-sentence scores. When no n-gram of some order matches anywhere, sacreBLEU's
default "exp" smoothing (the mteval script's) uses 1/(2^k · total) for the k-th
such order instead of 0. :func:`corpus_bleu` follows sacreBLEU's defaults exactly
(Post, 2018), so the numbers agree with ``sacrebleu.corpus_bleu(hyps, [refs])``;
tests/test_bleu.py checks that on random corpora.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass

MAX_ORDER = 4

# The 13a rules: punctuation and symbols become words of their own; a full stop or
# comma is split off unless it sits between digits (3.5 and 1,000 stay whole).
_13A_RULES = [
    (re.compile(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])"), r" \1 "),
    (re.compile(r"([^0-9])([\.,])"), r"\1 \2 "),
    (re.compile(r"([\.,])([^0-9])"), r" \1 \2"),
    (re.compile(r"([0-9])(-)"), r"\1 \2 "),
]


def tokenize_13a(line: str) -> list[str]:
    """Words of ``line`` under the 13a rules: ``"A dog, 3.5 m-long."`` → ``A dog , 3.5 m-long .``"""
    line = line.rstrip().replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    for entity, character in (("&quot;", '"'), ("&amp;", "&"), ("&lt;", "<"), ("&gt;", ">")):
        line = line.replace(entity, character)
    line = f" {line} "
    for pattern, replacement in _13A_RULES:
        line = pattern.sub(replacement, line)
    return line.split()


def ngrams(words: list[str], n: int) -> Counter:
    """How often each n-gram (a tuple of n words) occurs in ``words``."""
    return Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))


@dataclass
class BLEU:
    """A corpus BLEU score and the counts it was computed from."""

    score: float  # 0..100
    correct: list[int]  # clipped n-gram matches, n = 1..4
    total: list[int]  # hypothesis n-grams, n = 1..4
    precisions: list[float]  # 100 · p_n as used (smoothed where a count is 0)
    brevity_penalty: float
    hypothesis_length: int
    reference_length: int

    def __str__(self) -> str:
        precisions = "/".join(f"{p:.1f}" for p in self.precisions)
        return (f"BLEU = {self.score:.2f} {precisions} (BP = {self.brevity_penalty:.3f} ratio = "
                f"{self.hypothesis_length / max(self.reference_length, 1):.3f} hyp_len = "
                f"{self.hypothesis_length} ref_len = {self.reference_length})")


def corpus_bleu(hypotheses: list[str], references: list[str]) -> BLEU:
    """Corpus BLEU of ``hypotheses`` against one reference each (cased, 13a-tokenized)."""
    if isinstance(hypotheses, str) or isinstance(references, str):
        raise TypeError("hypotheses and references must be lists of strings, one sentence each")
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references; "
                         "BLEU needs one reference per hypothesis")
    correct, total = [0] * MAX_ORDER, [0] * MAX_ORDER
    c = r = 0
    for hypothesis, reference in zip(hypotheses, references):
        hyp, ref = tokenize_13a(hypothesis), tokenize_13a(reference)
        c, r = c + len(hyp), r + len(ref)
        for n in range(1, MAX_ORDER + 1):
            hyp_counts, ref_counts = ngrams(hyp, n), ngrams(ref, n)
            total[n - 1] += sum(hyp_counts.values())
            correct[n - 1] += sum(min(k, ref_counts[g]) for g, k in hyp_counts.items())  # clipped
    brevity_penalty = 1.0 if c >= r else (math.exp(1 - r / c) if c > 0 else 0.0)
    precisions = [0.0] * MAX_ORDER
    if not any(correct):
        return BLEU(0.0, correct, total, precisions, brevity_penalty, c, r)
    halvings = 1
    for n in range(MAX_ORDER):
        if total[n] == 0:
            break  # no hypothesis is this long: p_n stays 0 and so does BLEU
        if correct[n] == 0:
            halvings *= 2  # smoothing "exp": 1/2, 1/4, ... of one match
            precisions[n] = 100.0 / (halvings * total[n])
        else:
            precisions[n] = 100.0 * correct[n] / total[n]
    if min(precisions) == 0:
        return BLEU(0.0, correct, total, precisions, brevity_penalty, c, r)
    log_mean = sum(math.log(p) for p in precisions) / MAX_ORDER
    return BLEU(brevity_penalty * math.exp(log_mean), correct, total, precisions, brevity_penalty, c, r)


def sacrebleu_score(hypotheses: list[str], references: list[str]) -> tuple[float, str]:
    """sacreBLEU's own score and signature for the same corpus (the field's reference implementation)."""
    import sacrebleu

    metric = sacrebleu.metrics.BLEU()
    result = metric.corpus_score(hypotheses, [references])
    return result.score, str(metric.get_signature())
