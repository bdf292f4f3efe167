"""utils.bleu: BLEU from scratch equals sacreBLEU's corpus_bleu, edge cases included."""

import pytest
import sacrebleu
from hypothesis import given, settings
from hypothesis import strategies as st

from utils.bleu import corpus_bleu, ngrams, tokenize_13a

WORDS = ["a", "dog", "runs", "in", "the", "snow", ".", ",", "Two", "men", "3.5", "m-long", "&amp;", "x"]
sentence = st.lists(st.sampled_from(WORDS), min_size=0, max_size=9).map(" ".join)


def sacre(hypotheses, references):
    return sacrebleu.corpus_bleu(hypotheses, [references])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(sentence, sentence), min_size=1, max_size=6))
def test_equals_sacrebleu_on_random_corpora(pairs):
    hypotheses, references = map(list, zip(*pairs))
    ours, theirs = corpus_bleu(hypotheses, references), sacre(hypotheses, references)
    assert ours.score == pytest.approx(theirs.score, abs=1e-9)
    assert ours.correct == theirs.counts and ours.total == theirs.totals
    assert (ours.hypothesis_length, ours.reference_length) == (theirs.sys_len, theirs.ref_len)
    # the components chapter 12 shows: the (smoothed) n-gram precisions and the brevity penalty
    assert ours.precisions == pytest.approx(theirs.precisions, abs=1e-9)
    assert ours.brevity_penalty == pytest.approx(theirs.bp, abs=1e-12)


def test_edge_cases_equal_sacrebleu():
    references = ["A dog runs in the snow .", "Two men , one woman .", "x"]
    cases = [
        ["", "", ""],  # nothing said: BP = 0
        ["A dog", "Two", "x"],  # shorter than 4 words: no 4-grams at all
        ["A dog runs in the snow .", "Two men , one woman .", "x"],  # perfect
        ["snow the in runs dog A", "men Two", ""],  # unigram matches only: smoothing
        ["the the the the the the the", "", ""],  # clipping
    ]
    for hypotheses in cases:
        assert corpus_bleu(hypotheses, references).score == pytest.approx(sacre(hypotheses, references).score)
    assert corpus_bleu(cases[2], references).score == pytest.approx(100.0)
    assert corpus_bleu(cases[0], references).score == 0.0


def test_clipping_and_brevity_by_hand():
    result = corpus_bleu(["the the the"], ["the cat"])
    assert result.correct[0] == 1 and result.total[0] == 3  # "the" counts once: the reference has one
    short = corpus_bleu(["a b c d"], ["a b c d e f g h"])
    assert short.precisions == [100.0] * 4
    assert short.score == pytest.approx(100 * 2.718281828459045 ** (1 - 8 / 4))


def test_tokenizer_and_ngrams():
    assert tokenize_13a("A dog, 3.5 m-long.") == ["A", "dog", ",", "3.5", "m-long", "."]
    assert tokenize_13a("3-4 &amp; 5") == ["3", "-", "4", "&", "5"]  # a hyphen after a digit splits
    assert ngrams(["a", "b", "a", "b"], 2) == {("a", "b"): 2, ("b", "a"): 1}


def test_bad_input():
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        corpus_bleu(["a", "b"], ["a"])
    with pytest.raises(TypeError, match="lists of strings"):
        corpus_bleu("a dog", "a dog")


def test_components_of_a_smoothed_and_a_short_corpus_equal_sacrebleus():
    """p_n after "exp" smoothing (1/2, then 1/4, ... of one match) and BP, against sacreBLEU."""
    hypotheses, references = ["a b x y z", "c"], ["a b c d e f", "c d"]
    ours, theirs = corpus_bleu(hypotheses, references), sacre(hypotheses, references)
    assert ours.correct == [3, 1, 0, 0] and ours.total == [6, 4, 3, 2]
    assert ours.precisions == pytest.approx([50.0, 25.0, 100 / (2 * 3), 100 / (4 * 2)])
    assert ours.precisions == pytest.approx(theirs.precisions)
    assert ours.brevity_penalty == pytest.approx(2.718281828459045 ** (1 - 8 / 6)) == theirs.bp
