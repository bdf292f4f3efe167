"""utils.translation: bucketing, batches, the loss, and the command line of the translate task."""

import json
import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from utils.command_line import apply_settings
from utils.tokenizers import BPETokenizer
from utils.translation import (
    PRESETS,
    batch_positions,
    bucket_batches,
    collate,
    epoch_batches,
    padding_share,
    plan_steps,
    random_batches,
    strip_translation,
    translation_loss,
    validation_loss,
)

lengths_strategy = st.lists(st.tuples(st.integers(0, 30), st.integers(1, 31)), min_size=1, max_size=200)


@settings(max_examples=100, deadline=None)
@given(lengths_strategy, st.integers(64, 600), st.one_of(st.none(), st.integers(0, 5)))
def test_bucketing_loses_no_pair_and_keeps_every_budget(lengths, max_tokens, seed):
    batches = bucket_batches(lengths, max_tokens, seed=seed)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))  # each pair exactly once
    assert all(batch and batch_positions(lengths, batch) <= max_tokens for batch in batches)


def test_bucketing_cuts_padding_and_rejects_a_pair_over_budget():
    g = torch.Generator().manual_seed(0)
    src = torch.randint(3, 40, (2000,), generator=g)  # targets about as long as their sources, as in Multi30k
    lengths = [(int(a), int(a) + int(d)) for a, d in zip(src, torch.randint(-2, 3, (2000,), generator=g))]
    bucketed = bucket_batches(lengths, 1000)
    plain = random_batches(len(lengths), len(lengths) // len(bucketed))
    assert padding_share(lengths, bucketed) < 0.1 < 0.3 < padding_share(lengths, plain)
    assert bucket_batches(lengths, 1000, seed=1) != bucketed  # another epoch, other batches
    with pytest.raises(ValueError, match="pair 1 alone has 50 positions"):
        bucket_batches([(3, 3), (25, 25)], 40)


def test_validation_batches_are_the_same_in_every_call():
    """seed=None must not draw ties at random: under torchrun every process must cut the same batches."""
    lengths = [(3, 4)] * 50 + [(5, 2)] * 50  # many ties
    assert bucket_batches(lengths, 40, seed=None) == bucket_batches(lengths, 40, seed=None)
    assert bucket_batches(lengths, 40, seed=None)[0] == [0, 1, 2, 3, 4]  # ties in index order, 5 × 8 positions


def test_collate_shifts_the_target_and_the_loss_ignores_padding():
    tokenizer = BPETokenizer([], specials=True)
    pad, sos, eos = tokenizer.pad_id, tokenizer.sos_id, tokenizer.eos_id
    encoded = [([10, 11, 12], [20, 21]), ([13], [22, 23, 24, 25])]
    src, tgt_in, tgt_out = collate(encoded, [0, 1], tokenizer)
    assert src.tolist() == [[10, 11, 12], [13, pad, pad]]
    assert tgt_in.tolist() == [[sos, 20, 21, pad, pad], [sos, 22, 23, 24, 25]]
    assert tgt_out.tolist() == [[20, 21, eos, pad, pad], [22, 23, 24, 25, eos]]

    class Logits(torch.nn.Module):  # a stand-in model: fixed logits, whatever the input
        def __init__(self, logits):
            super().__init__()
            self.logits = logits

        def forward(self, src, tgt_in):
            return self.logits

    logits = torch.randn(2, 5, 300)
    loss = translation_loss(Logits(logits), (src, tgt_in, tgt_out), pad_id=pad)
    real = tgt_out != pad
    expected = -torch.log_softmax(logits, -1)[real].gather(-1, tgt_out[real][:, None]).mean()
    torch.testing.assert_close(loss, expected)
    garbage = logits.clone()
    garbage[~real] = 1e4  # what the model says at padded positions must not matter
    torch.testing.assert_close(translation_loss(Logits(garbage), (src, tgt_in, tgt_out), pad_id=pad), expected)


def tiny_validation():
    """A tiny translator's validation loss on 40 pairs, in batches of at most 60 positions."""
    from utils.models import Transformer, TransformerConfig

    tokenizer = BPETokenizer([], specials=True)
    generator = torch.Generator().manual_seed(0)
    encoded = [(torch.randint(10, 250, (int(n) % 7 + 1,), generator=generator).tolist(),
                torch.randint(10, 250, (int(n) % 5 + 1,), generator=generator).tolist()) for n in range(40)]
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(src_vocab_size=tokenizer.vocab_size, tgt_vocab_size=tokenizer.vocab_size,
                                          C=16, n_heads=2, n_encoder_layers=1, n_decoder_layers=1, pad_id=0))
    with torch.no_grad():
        return validation_loss(model.eval(), encoded, tokenizer, max_tokens=60)


def test_validation_loss_in_2_processes_equals_one_process():
    from utils import distributed

    alone = tiny_validation()
    rank0, rank1 = distributed.start_processes(tiny_validation, 2)
    assert rank0 == rank1 == pytest.approx(alone, rel=1e-6)


def test_epoch_batches_are_a_pure_function_of_the_index():
    tokenizer = BPETokenizer([], specials=True)
    g = torch.Generator().manual_seed(1)
    encoded = [([5] * int(a), [6] * int(b)) for a, b in torch.randint(1, 20, (300, 2), generator=g)]
    batch_at, n = epoch_batches(encoded, tokenizer, 200, seed=3)
    first = [batch_at(i) for i in (0, n - 1, n, 2 * n + 5)]
    again, _ = epoch_batches(encoded, tokenizer, 200, seed=3)
    for i, batch in zip((0, n - 1, n, 2 * n + 5), first):
        assert all(torch.equal(a, b) for a, b in zip(batch, again(i)))
    assert sum(batch_at(i)[0].shape[0] for i in range(n)) == 300  # one epoch is every pair once


def test_strip_translation_and_settings():
    tokenizer = BPETokenizer([], specials=True)
    assert strip_translation([tokenizer.sos_id, 50, 51, tokenizer.eos_id, 0, 0], tokenizer) == [50, 51]
    assert strip_translation([tokenizer.sos_id, 50], tokenizer) == [50]
    changed = apply_settings({"model": {"C": 8}, "train": {}}, ["model.C=16", "train.schedule=constant"])
    assert changed == {"model": {"C": 16}, "train": {"schedule": "constant"}}


def test_presets_train_a_fixed_number_of_steps_and_minutes_is_an_option():
    assert PRESETS["cpu"]["train"]["steps"] == 4000 and PRESETS["gpu"]["train"]["steps"] == 3600
    assert not any("minutes" in section or "epochs" in section for p in PRESETS.values() for section in p.values())
    assert plan_steps(4000, 500) == (4000, False)  # the preset's steps, on every machine
    assert plan_steps(4000, 500, epochs=3) == (1500, False)
    assert plan_steps(4000, 500, minutes=2.0) == (4000, True)  # a time budget: the caller plans from timed steps
    assert plan_steps(4000, 500, steps=7, epochs=3, minutes=2.0) == (7, False)  # --steps wins
    assert plan_steps(4000, 500, resume_steps=1234, epochs=3) == (1234, False)  # a resumed run keeps its total


TINY = ["--steps", "2", "--test-sentences", "4", "--beam", "2", "--set", "data.train_pairs=300",
        "--set", "data.vocab_size=300", "--set", "model.C=16", "--set", "model.d_ff=32",
        "--set", "model.n_heads=2", "--set", "model.n_encoder_layers=1", "--set", "model.n_decoder_layers=1"]


def cli(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, input=stdin, timeout=600)


def test_command_line_json_line_checkpoint_and_translate(tmp_path):
    out = tmp_path / "run"
    result = cli("utils.train", "translate", "--out", str(out), *TINY)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    for key in ("task", "preset", "device", "epochs", "seconds", "val_loss", "bleu", "bleu_greedy", "bleu_val"):
        assert key in summary
    assert 0 <= summary["bleu_val"] <= 100
    assert summary["task"] == "translate" and summary["steps"] == 2 and summary["test_sentences"] == 4
    assert (out / "checkpoint.pt").is_file() and (out / "metrics.json").is_file()

    again = cli("utils.train", "translate", "--out", str(out), *TINY)  # never overwrite a good checkpoint
    assert again.returncode == 2 and "already exists" in again.stderr

    translated = cli("utils.translate", "--checkpoint", str(out), "--beam", "2", stdin="Ein Hund.\nZwei Männer.\n")
    assert translated.returncode == 0, translated.stderr
    assert len(translated.stdout.splitlines()) == 2


@pytest.mark.parametrize("args, message", [
    (["--preset", "tpu"], "unknown preset"),
    (["--epochs", "0"], "--epochs must be >= 1"),
    (["--minutes", "-1"], "--minutes must be > 0"),
    (["--set", "nonsense"], "SECTION.FIELD=VALUE"),
    (["--set", "decode.beam=3"], "decode has no setting 'beam'; it has alpha, batch_size, beam_size"),
    (["--set", "train.steps=3"], "use --steps, --epochs or --minutes"),
    (["--set", "train.eval_every=3"], "validates once per epoch"),
    (["--set", "model.dropout=abc"], "dropout must be a number"),
])
def test_command_line_bad_arguments_exit_2(tmp_path, args, message):
    result = cli("utils.train", "translate", "--out", str(tmp_path / "x"), *args)
    assert result.returncode == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_translate_command_refuses_a_bad_alpha_before_loading(tmp_path):
    for alpha in ("-0.5", "inf", "nan"):
        result = cli("utils.translate", "--checkpoint", str(tmp_path / "nothing"), "--alpha", alpha, "Hallo")
        assert result.returncode == 2 and "--alpha must be a finite number >= 0" in result.stderr, result.stderr


def test_translate_command_bad_checkpoints(tmp_path):
    missing = cli("utils.translate", "--checkpoint", str(tmp_path / "nothing"), "Hallo")
    assert missing.returncode == 2 and "no checkpoint" in missing.stderr
    corrupt = tmp_path / "checkpoint.pt"
    corrupt.write_bytes(b"not a checkpoint")
    result = cli("utils.translate", "--checkpoint", str(tmp_path), "Hallo")
    assert result.returncode == 2 and "not a readable checkpoint" in result.stderr
