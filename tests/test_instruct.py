"""Chapter 17's task: data, the answer-only loss, decoding through beam_translate, the command line."""

import json
import subprocess
import sys

import pytest
import torch

from utils import instruct
from utils.chat import (
    CHAT_TOKENS,
    answer_text,
    assistant_only_loss,
    chat_token_ids,
    chat_vocab_size,
    encode_chat,
    encode_prompt,
    pad_chats,
    translation_turns,
)
from utils.generate import beam_translate
from utils.lora import add_lora, parameter_counts
from utils.modern import Llama, LlamaConfig
from utils.tokenizers import BPETokenizer

PAIRS = [("Ein Hund läuft im Schnee.", "A dog runs in the snow."),
         ("Zwei Männer spielen Fußball.", "Two men play soccer."),
         ("Eine Frau liest ein Buch im Park.", "A woman reads a book in the park."),
         ("Kinder spielen am Strand.", "Children play on the beach."),
         ("Ein Mann fährt Fahrrad.", "A man rides a bike.")]


@pytest.fixture(scope="module")
def tokenizer():
    return BPETokenizer.from_text([text for pair in PAIRS for text in pair], 300, specials=True)


def small_model(tokenizer, seed=0, **fields):
    torch.manual_seed(seed)
    config = dict(vocab_size=chat_vocab_size(tokenizer), block_size=64, C=32, n_heads=2, n_layers=2, norm="layer",
                  feed_forward="relu", bias=True)
    return Llama(LlamaConfig(**{**config, **fields})).eval()


def test_logits_at_gives_the_full_logits_rows_and_refuses_a_bad_mask(tokenizer):
    model = small_model(tokenizer)
    ids = torch.randint(0, 300, (3, 9))
    at = torch.rand(3, 9) > 0.5
    full = model(ids)  # (B, T, V)
    assert torch.allclose(model(ids, logits_at=at), full[at], atol=1e-6)
    with pytest.raises(ValueError, match="logits_at must be a bool tensor of idx's shape"):
        model(ids, logits_at=at[:, :4])
    with pytest.raises(ValueError, match="logits_at must be a bool tensor"):
        model(ids, logits_at=at.long())


def test_answer_loss_equals_the_assistant_only_loss_on_full_logits(tokenizer):
    model = small_model(tokenizer).train()
    examples = instruct.encode_examples(PAIRS, tokenizer, block_size=64)
    batch = pad_chats(examples, tokenizer.pad_id)
    torch.manual_seed(1)
    ours = instruct.answer_loss(model.eval(), batch)
    inputs, targets, mask = batch
    reference = assistant_only_loss(model(inputs), targets, mask)
    assert torch.allclose(ours, reference, atol=1e-6)
    # and it is the mean over the answers' tokens only, computed by hand in float64
    logits = model(inputs).double().log_softmax(-1)
    picked = -logits.gather(-1, targets[..., None])[..., 0]
    assert torch.allclose(ours.double(), picked[mask].mean(), atol=1e-5)
    assert not torch.allclose(ours.double(), picked[targets != tokenizer.pad_id].mean(), atol=1e-3)


def test_documents_and_the_pretraining_stream(tokenizer):
    texts = instruct.documents(PAIRS, seed=3)
    assert sorted(texts) == sorted(t for pair in PAIRS for t in pair)
    assert texts != [t for pair in PAIRS for t in pair]  # shuffled: a caption is not beside its translation
    stream = instruct.pretraining_stream(texts, tokenizer)
    end = chat_token_ids(tokenizer)["<|end|>"]
    assert int((stream == end).sum()) == len(texts) and int(stream[-1]) == end
    pieces = torch.tensor_split(stream, (stream == end).nonzero()[:, 0] + 1)[:-1]
    assert [tokenizer.decode(p[:-1].tolist()) for p in pieces] == texts


def test_epoch_batches_hold_every_conversation_once_within_the_budget(tokenizer):
    examples = instruct.encode_examples(PAIRS * 7, tokenizer, block_size=64)
    batch_at, n = instruct.epoch_batches(examples, max_tokens=128, pad_id=tokenizer.pad_id, seed=0)
    seen = []
    for i in range(n):
        inputs, targets, mask = batch_at(i)
        assert inputs.numel() <= 128 and inputs.shape == targets.shape == mask.shape
        seen += [tuple(row[m].tolist()) for row, m in zip(targets, mask)]
    expected = [tuple(ids[1:][i] for i in range(len(ids) - 1) if m[1:][i]) for ids, m in examples]
    assert sorted(seen) == sorted(expected)
    assert torch.equal(batch_at(n + 2)[0], instruct.epoch_batches(examples, 128, tokenizer.pad_id, 0)[0](n + 2)[0])


def greedy_by_hand(model, prompt, end_id, max_new):
    """An independent reference: feed everything, take the argmax, stop at <|end|>."""
    ids = list(prompt)
    for _ in range(max_new):
        with torch.no_grad():
            next_id = int(model(torch.tensor([ids]))[0, -1].argmax())
        ids.append(next_id)
        if next_id == end_id:
            break
    return ids[len(prompt):]


def test_prompt_as_source_greedy_equals_a_hand_written_loop_with_and_without_cache(tokenizer):
    model = small_model(tokenizer, seed=2)
    special = chat_token_ids(tokenizer)
    prompts = [encode_prompt(translation_turns(de), tokenizer) for de in ("Ein Hund.", "Ein Mann.")]
    assert len(prompts[0]) == len(prompts[1])
    src = torch.tensor([p[:-1] for p in prompts])
    adapter = instruct.PromptAsSource(model, src.shape[1])
    for use_cache in (False, True):
        out = beam_translate(adapter, src, sos_id=special["<|assistant|>"], eos_id=special["<|end|>"],
                             pad_id=tokenizer.pad_id, beam_size=1, max_new_tokens=12, use_cache=use_cache)
        for row, prompt in enumerate(prompts):
            expected = greedy_by_hand(model, prompt, special["<|end|>"], 12)
            assert out[row, 1:1 + len(expected)].tolist() == expected
    beams = [beam_translate(adapter, src, sos_id=special["<|assistant|>"], eos_id=special["<|end|>"],
                            pad_id=tokenizer.pad_id, beam_size=3, max_new_tokens=12, use_cache=c) for c in (0, 1)]
    assert torch.equal(beams[0], beams[1])
    with pytest.raises(ValueError, match="leaves no room"):
        instruct.PromptAsSource(model, 64)


def test_translate_keeps_the_order_and_batches_change_nothing(tokenizer):
    model = small_model(tokenizer, seed=4)
    sentences = [de for de, _ in PAIRS] + ["Hund."]
    together = instruct.translate(model, tokenizer, sentences, beam_size=2, batch_size=2)
    alone = [instruct.translate(model, tokenizer, [s], beam_size=2)[0] for s in sentences]
    assert together == alone
    special = chat_token_ids(tokenizer)
    prompt = encode_prompt(translation_turns(sentences[0]), tokenizer)
    reference = answer_text(greedy_by_hand(model, prompt, special["<|end|>"], 64 - len(prompt)), tokenizer)
    assert instruct.translate(model, tokenizer, sentences[:1], beam_size=1, extra_tokens=64)[0] == reference.strip()


def test_a_prompt_longer_than_half_the_context_is_cut_in_the_german(tokenizer):
    long = " ".join(["Ein Hund läuft im Schnee."] * 20)
    ids = instruct.prompt_ids(long, tokenizer, 32)
    assert len(ids) <= 32 and ids[-1] == chat_token_ids(tokenizer)["<|assistant|>"]
    assert ids[0] == chat_token_ids(tokenizer)["<|user|>"]


def test_lora_trains_r_times_in_plus_out_per_target(tokenizer):
    model = small_model(tokenizer)
    targets = instruct.PRESETS["cpu"]["lora"]["targets"]
    add_lora(model, list(targets), r=4, alpha=8)
    linears = [m for name, m in small_model(tokenizer).named_modules()
               if isinstance(m, torch.nn.Linear) and name.rsplit(".", 1)[-1] in targets]
    assert parameter_counts(model)[0] == sum(4 * (m.in_features + m.out_features) for m in linears)
    # measured, not restated: the bytes AdamW holds after one step on the trainable parameters
    optimizer = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad])
    model(torch.randint(0, 300, (2, 5))).square().mean().backward()
    optimizer.step()
    held = sum(t.numel() * t.element_size() for state in optimizer.state.values()
               for name, t in state.items() if name in ("exp_avg", "exp_avg_sq"))
    assert instruct.optimizer_state_bytes(model) == held


# --- the command line ---------------------------------------------------------------------------

TINY = ["--steps", "3", "--test-sentences", "4", "--beam", "2", "--set", "data.train_pairs=300",
        "--set", "data.vocab_size=300", "--set", "model.C=16", "--set", "model.d_ff=32", "--set", "model.n_heads=2",
        "--set", "model.n_layers=1", "--set", "pretrain.steps=2", "--set", "pretrain.batch_size=4",
        "--device", "cpu"]


def cli(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, input=stdin, timeout=600)


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("instruct") / "run"
    result = cli("utils.train", "instruct", "--out", str(out), "--lora", "2", *TINY)
    assert result.returncode == 0, result.stderr
    return out, json.loads(result.stdout.strip().splitlines()[-1])


def test_command_line_json_line_checkpoint_resume_and_translate(lora_run):
    out, summary = lora_run
    for key in ("task", "preset", "device", "seconds", "bleu", "bleu_greedy", "bleu_val", "trainable_parameters"):
        assert key in summary, key
    assert (summary["task"], summary["preset"], summary["device"], summary["steps"]) == ("instruct", "cpu", "cpu", 3)
    assert summary["lora"] == 2 and summary["pretrain_steps"] == 2
    assert 0 < summary["trainable_parameters"] < summary["parameters"]
    assert all(0 <= summary[k] <= 100 for k in ("bleu", "bleu_greedy", "bleu_val"))
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)
    assert checkpoint["metadata"]["phase"] == "tune" and checkpoint["metadata"]["lora"]["r"] == 2
    assert (out / "metrics.json").is_file()
    pretrained = torch.load(out / "pretrained.pt", weights_only=True)  # the pretraining's last checkpoint
    assert (pretrained["metadata"]["phase"], pretrained["step"]) == ("pretrain", 2)
    assert not any("lora" in name for name in pretrained["model"])
    refused = cli("utils.translate", "--checkpoint", str(out / "pretrained.pt"), "Hallo")
    assert refused.returncode == 2 and "not instruction-tuned" in refused.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_config"]["lr"] == instruct.PRESETS["cpu"]["lora"]["lr"] != instruct.PRESETS["cpu"]["train"]["lr"]

    model, tokenizer = instruct.model_from_checkpoint(out)
    assert not any("lora" in name for name, _ in model.named_parameters())  # merged into plain layers
    translated = cli("utils.translate", "--checkpoint", str(out), "--beam", "1", stdin="Ein Hund.\nZwei Männer.\n")
    assert translated.returncode == 0, translated.stderr
    assert translated.stdout.splitlines() == instruct.translate(model, tokenizer, ["Ein Hund.", "Zwei Männer."])

    refused = cli("utils.train", "instruct", "--out", str(out), "--resume", *TINY)  # without --lora
    assert refused.returncode == 2 and "--lora 2" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    more = cli("utils.train", "instruct", "--out", str(out), "--resume", "--lora", "2", *TINY[2:], "--steps", "5")
    assert more.returncode == 0, more.stderr
    assert json.loads(more.stdout.strip().splitlines()[-1])["steps"] == 5


def test_a_checkpoint_in_pretraining_resumes_there(tmp_path):
    out = tmp_path / "run"
    result = cli("utils.train", "instruct", "--out", str(out), *TINY, "--steps", "0")
    assert result.returncode == 0, result.stderr
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)
    checkpoint["metadata"]["phase"] = "pretrain"
    checkpoint["step"] = 1  # as if stopped after one of two pretraining steps
    checkpoint["config"]["steps"] = 2
    torch.save(checkpoint, out / "checkpoint.pt")
    refused = cli("utils.translate", "--checkpoint", str(out), "Hallo")
    assert refused.returncode == 2 and "not instruction-tuned" in refused.stderr
    resumed = cli("utils.train", "instruct", "--out", str(out), "--resume", *TINY)
    assert resumed.returncode == 0, resumed.stderr
    assert torch.load(out / "checkpoint.pt", weights_only=True)["metadata"]["phase"] == "tune"


@pytest.mark.parametrize("args, message", [
    (["--lora", "0"], "--lora must be >= 1"),
    (["--lora", "x"], "invalid int value"),
    (["--set", "lora.targets=[]"], "lora.targets must be a non-empty list"),
    (["--lora", "2", "--set", "lora.targets=['wq']"], "matches no module"),
    (["--set", "lora.alpha=0"], "lora.alpha"),
    (["--set", "lora.lr=0"], "lora.lr must be a finite number >= 0.0001"),
    (["--set", "train.batch_size=3"], "set data.max_tokens instead"),
    (["--set", "pretrain.device='cuda'"], "use --device"),
    (["--set", "pretrain.steps=-1"], "pretrain: steps must be"),
    (["--set", "data.max_tokens=10"], "data.max_tokens must be >= model.block_size"),
    (["--set", "model.n_heads=3"], "model:"),
    (["--set", "decode.beam_size=0"], "decode.beam_size"),
])
def test_command_line_bad_arguments_exit_2_with_one_line(tmp_path, args, message):
    result = cli("utils.train", "instruct", "--out", str(tmp_path / "x"), *args)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_the_chat_tokens_follow_the_vocabulary(tokenizer):
    ids, mask = encode_chat(translation_turns(*PAIRS[0]), tokenizer)
    V = tokenizer.vocab_size
    assert [i - V for i in ids if i >= V] == [0, 2, 1, 2]  # <|user|> <|end|> <|assistant|> <|end|>
    assert chat_vocab_size(tokenizer) == V + len(CHAT_TOKENS)
    assert sum(mask) == len(tokenizer.encode(PAIRS[0][1])) + 1  # the answer and its <|end|>


@pytest.mark.parametrize("name", sorted(instruct.PRESETS))
def test_every_preset_passes_its_own_checks_with_and_without_lora(name):
    preset = instruct.PRESETS[name]
    instruct.check_settings(preset)
    instruct.check_settings(preset, lora_rank=8)  # the LoRA targets exist in that preset's blocks
    with pytest.raises(ValueError, match="matches no module"):
        other = "gpu" if name == "cpu" else "cpu"  # the other feed-forward network's layer names
        instruct.check_settings({**preset, "lora": instruct.PRESETS[other]["lora"]}, lora_rank=8)


def test_translate_refuses_what_is_not_a_list_of_sentences(tokenizer):
    model = small_model(tokenizer)
    with pytest.raises(ValueError, match=r"wrap one sentence in a list"):
        instruct.translate(model, tokenizer, "Ein Hund.")  # would be translated letter by letter
    with pytest.raises(ValueError, match="sentence 1 must be a string, got NoneType"):
        instruct.translate(model, tokenizer, ["Ein Hund.", None])
    assert instruct.translate(model, tokenizer, []) == []
