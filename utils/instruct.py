"""From a language model to an assistant: the task of ``python -m utils.train instruct`` (chapter 17).

Chapter 12's translator is an encoder–decoder. Today's assistants are one decoder
that reads everything as a single stream of tokens. This task trains such a model on
chapter 12's data, in the two phases every assistant goes through:

* **Pretraining** — chapter 15's decoder (:class:`utils.modern.Llama`) learns plain
  text: every German and every English caption of Multi30k's *training* split is one
  document, the documents are shuffled (a caption's neighbour is not its translation:
  the model sees no parallel text here) and joined into one stream, each closed by
  the chat template's ``<|end|>``, which plays GPT-2's ``<|endoftext|>``. Random
  windows of the stream, next-token loss everywhere (chapter 11's recipe).
* **Instruction tuning** (supervised fine-tuning) — each training pair becomes one
  conversation in :mod:`utils.chat`'s template: the user asks ``Translate to English:
  <German>``, the assistant answers with the English sentence. The loss counts the
  answer's tokens and its closing ``<|end|>`` only, and the output layer runs only
  there (:meth:`~utils.modern.Llama.forward`'s ``logits_at``). Conversations are
  batched by length (chapter 12's :func:`~utils.translation.bucket_batches`) and
  padded on the right: a causal model's real positions never see the padding after
  them, so no attention mask is needed.
* **LoRA** (``--lora R``) — the pretrained weights stay frozen and only low-rank
  updates of the blocks' linear layers train (:mod:`utils.lora`); the checkpoint
  keeps the adapters apart, and translation runs on the merged weights.

The model shares chapter 12's tokenizer: one byte-level BPE for both languages,
trained on the training pairs only, plus the three chat tokens after its vocabulary.
Translations are decoded with the book's one beam search
(:func:`utils.generate.beam_translate`) through :class:`PromptAsSource`, which shows
the decoder-only model to it as an encoder–decoder whose "encoder" is the prompt;
scored with sacreBLEU as chapter 12's are. ``beam_size=1`` is greedy decoding.
"""

from __future__ import annotations

import dataclasses
import random
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

from utils import presets
from utils.chat import (
    CHAT_TOKENS,
    END_TOKEN,
    IGNORE,
    answer_text,
    chat_token_ids,
    chat_vocab_size,
    encode_chat,
    encode_prompt,
    pad_chats,
    translation_turns,
)
from utils.checkpoints import CheckpointError, load_checkpoint, write_metrics
from utils.checks import check_int, check_number
from utils.data import load_multi30k
from utils.generate import beam_translate
from utils.loop import sequence_loss
from utils.lora import add_lora, lora_layers, parameter_counts, unload_lora
from utils.modern import Llama, LlamaConfig
from utils.tokenizers import SPECIAL_TOKENS, BPETokenizer
from utils.trainer import TrainConfig, Trainer, random_windows, whole_split_loss
from utils.translation import (
    batches_by_epoch,
    bucket_batches,
    check_sentences,
    score_translations,
    train_tokenizer,
)

TASK = "instruct"

PRESETS = presets.INSTRUCT  # cpu and gpu: data, model, pretrain, train, lora and decode settings each

# What ``--set SECTION.FIELD=VALUE`` may change: each section's settings.
SETTINGS = {
    "data": ("vocab_size", "max_tokens", "train_pairs"),
    "model": tuple(f.name for f in dataclasses.fields(LlamaConfig) if f.name != "vocab_size"),
    "pretrain": tuple(f.name for f in dataclasses.fields(TrainConfig)),
    "train": tuple(f.name for f in dataclasses.fields(TrainConfig)),
    "lora": ("alpha", "lr", "targets", "dropout"),
    "decode": ("beam_size", "alpha", "batch_size"),
}


# --- data -----------------------------------------------------------------------------------------


def documents(pairs: list[tuple[str, str]], seed: int = 0) -> list[str]:
    """Every German and every English caption of ``pairs``, each one document, in a shuffled order.

    Shuffled so that a caption's neighbour in the stream is almost never its translation:
    pretraining must learn each language, not the pairing.
    """
    texts = [text for pair in pairs for text in pair]
    random.Random(seed).shuffle(texts)
    return texts


def pretraining_stream(texts: list[str], tokenizer: BPETokenizer) -> torch.Tensor:
    """Documents → one stream of ids (N,), each document followed by ``<|end|>``."""
    end = chat_token_ids(tokenizer)[END_TOKEN]
    ids: list[int] = []
    for text in texts:
        ids += tokenizer.encode(text)
        ids.append(end)
    return torch.tensor(ids, dtype=torch.long)


def encode_examples(pairs: list[tuple[str, str]], tokenizer: BPETokenizer,
                    block_size: int) -> list[tuple[list[int], list[bool]]]:
    """Pairs → conversations ``(ids, loss_mask)`` (:func:`utils.chat.encode_chat`), cut to
    ``block_size + 1`` ids (the model reads all but the last). Multi30k's longest pair
    fits the presets' contexts; a cut would drop the answer's end."""
    block_size = check_int("block_size", block_size, minimum=1)
    examples = []
    for german, english in pairs:
        ids, mask = encode_chat(translation_turns(german, english), tokenizer)
        examples.append((ids[: block_size + 1], mask[: block_size + 1]))
    return examples


def example_lengths(examples) -> list[tuple[int, int]]:
    """Each conversation's input length (ids − 1), as :func:`~utils.translation.bucket_batches` takes it."""
    return [(len(ids) - 1, 0) for ids, _ in examples]


def epoch_batches(examples, max_tokens: int, pad_id: int, seed: int = 0):
    """``(batch_at, batches_per_epoch)``: chapter 12's :func:`~utils.translation.batches_by_epoch`
    over the conversations, each batch ``(inputs, targets, mask)`` from :func:`utils.chat.pad_chats`."""
    return batches_by_epoch(example_lengths(examples), max_tokens,
                            lambda batch: pad_chats([examples[k] for k in batch], pad_id), seed)


# --- loss, evaluation and decoding ---------------------------------------------------------------


def answer_loss(model: nn.Module, batch, *, label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy over the answers' tokens of a batch ``(inputs, targets, mask)``.

    Equal to :func:`utils.chat.assistant_only_loss` on the full logits; the output layer
    runs only where ``mask`` is True, so (N, V) logits are made instead of (B, T, V).
    """
    inputs, targets, mask = batch
    logits = model(inputs, logits_at=mask)  # (N, V): the answers' positions only
    return sequence_loss(logits[None], targets[mask][None], ignore_index=IGNORE, label_smoothing=label_smoothing)


@torch.no_grad()
def validation_loss(model: nn.Module, examples, pad_id: int, max_tokens: int) -> float:
    """Mean cross-entropy per answer token over the whole split (no label smoothing)."""
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for batch in bucket_batches(example_lengths(examples), max_tokens, seed=None):
        inputs, targets, mask = (t.to(device) for t in pad_chats([examples[k] for k in batch], pad_id))
        n = int(mask.sum())
        total += answer_loss(model, (inputs, targets, mask)).item() * n
        count += n
    return total / count


class PromptAsSource(nn.Module):
    """A decoder-only model seen as an encoder–decoder by :func:`~utils.generate.beam_translate`.

    The "source" is the prompt without its last token, ``<|assistant|>``, which plays
    ``<SOS>``; ``<|end|>`` plays ``<EOS>``. ``encode`` returns the prompt itself (a
    decoder-only model has no separate memory), and ``decode`` feeds the prompt and the
    answer so far to the model: all of it without a cache; with one, the prompt and the
    first token at the first step, then the newest token only. Every prompt of a batch
    must have the same length (a causal model has no padding mask), and
    ``config.max_len`` keeps prompt and answer within the model's ``block_size``.
    """

    def __init__(self, model: Llama, prompt_length: int):
        super().__init__()
        self.model = model
        room = model.config.block_size - prompt_length
        if room < 1:
            raise ValueError(f"a prompt of {prompt_length} tokens leaves no room in block_size="
                             f"{model.config.block_size}")
        self.config = SimpleNamespace(max_len=room, src_vocab_size=model.config.vocab_size)

    def encode(self, src: torch.Tensor, src_key_padding_mask=None) -> torch.Tensor:
        return src  # (B, T_prompt)

    def new_cache(self) -> list:
        return [(cache, None) for cache in self.model.new_cache()]  # (self-attention, no cross-attention)

    def decode(self, tgt: torch.Tensor, memory: torch.Tensor, memory_key_padding_mask=None,
               cache: list | None = None) -> torch.Tensor:
        if cache is None:
            return self.model(torch.cat([memory, tgt], dim=1))[:, memory.shape[1]:]  # (B, T_dec, V)
        self_caches = [self_cache for self_cache, _ in cache]
        if len(self_caches[0]) == 0:  # the first step: the prompt goes in with the first token
            return self.model(torch.cat([memory, tgt], dim=1), cache=self_caches)[:, memory.shape[1]:]
        return self.model(tgt, cache=self_caches)  # (B, 1, V)


def prompt_ids(german: str, tokenizer: BPETokenizer, max_prompt: int) -> list[int]:
    """The ids of the prompt ``<|user|>Translate to English: German<|end|><|assistant|>``, with the
    German cut (at a token) so that the prompt has at most ``max_prompt`` ids."""
    ids = encode_prompt(translation_turns(german or " "), tokenizer)
    if len(ids) > max_prompt:
        german_ids = tokenizer.encode(german)[: max(1, len(tokenizer.encode(german)) - (len(ids) - max_prompt))]
        ids = encode_prompt(translation_turns(tokenizer.decode(german_ids) or " "), tokenizer)[-max_prompt:]
    return ids


@torch.no_grad()
def translate(model: Llama, tokenizer: BPETokenizer, sentences: list[str], *, beam_size: int = 1,
              alpha: float = 0.6, batch_size: int = 100, extra_tokens: int = 10) -> list[str]:
    """German sentences → English with the instruction-tuned model, in the same order.

    Prompts are grouped by their exact length (no padding), each group decoded by
    :func:`utils.generate.beam_translate` with the KV cache; an answer may have up to
    1.5 times as many tokens as its German side plus ``extra_tokens``, within the
    model's context. The answer is the text up to the first ``<|end|>``.
    """
    batch_size = check_int("batch_size", batch_size, minimum=1)
    beam_size = check_int("beam_size", beam_size, minimum=1)
    extra_tokens = check_int("extra_tokens", extra_tokens, minimum=0)
    sentences = check_sentences(sentences)
    device = next(model.parameters()).device
    special = chat_token_ids(tokenizer)
    prompts = [prompt_ids(s, tokenizer, model.config.block_size // 2) for s in sentences]
    overhead = len(prompt_ids("", tokenizer, model.config.block_size))  # the template's own ids, around " "
    groups: dict[int, list[int]] = {}
    for i, ids in enumerate(prompts):
        groups.setdefault(len(ids), []).append(i)
    out = [""] * len(sentences)
    for length, members in sorted(groups.items()):
        adapter = PromptAsSource(model, length - 1)
        budget = (length - overhead) * 3 // 2 + extra_tokens
        for start in range(0, len(members), batch_size):
            chunk = members[start : start + batch_size]
            src = torch.tensor([prompts[i][:-1] for i in chunk], dtype=torch.long, device=device)
            ids = beam_translate(adapter, src, sos_id=special["<|assistant|>"], eos_id=special[END_TOKEN],
                                 pad_id=tokenizer.pad_id, beam_size=beam_size, alpha=alpha,
                                 max_new_tokens=budget, use_cache=True).cpu()  # (B, 1 + n), one copy
            for row, i in enumerate(chunk):
                out[i] = answer_text(ids[row, 1:].tolist(), tokenizer).strip()  # up to <|end|>
    return out


# --- model, presets and checkpoints ------------------------------------------------------------


def configs(preset: dict, vocab_size: int, **train_overrides) -> tuple[LlamaConfig, TrainConfig, TrainConfig]:
    """The model, pretraining and tuning settings of a preset (a dict like ``PRESETS["cpu"]``);
    ``vocab_size`` counts the model's rows: the tokenizer's ids and the chat tokens
    (:func:`utils.chat.chat_vocab_size`)."""
    try:
        model_config = LlamaConfig(vocab_size=vocab_size, **preset["model"])
        pretrain = TrainConfig(**{**preset["pretrain"], **train_overrides})
        tune = TrainConfig(**{**preset["train"], **train_overrides})
    except TypeError as error:
        raise ValueError(str(error)) from None
    return model_config, pretrain, tune


def build_model(model_config: LlamaConfig, lora: dict | None = None) -> Llama:
    """Chapter 15's decoder; with ``lora`` (``{"r", "alpha", "targets", "dropout"}``) its target
    layers wrapped in LoRA and everything else frozen."""
    model = Llama(model_config)
    if lora:
        add_lora(model, list(lora["targets"]), r=lora["r"], alpha=lora["alpha"], dropout=lora.get("dropout", 0.0))
    return model


def metadata(model_config: LlamaConfig, tokenizer: BPETokenizer, phase: str, lora: dict | None) -> dict:
    """What a checkpoint of this task must match: task, phase, model, LoRA settings, tokenizer."""
    return {"task": TASK, "phase": phase, "model": dataclasses.asdict(model_config),
            "lora": None if lora is None else {**lora, "targets": list(lora["targets"])},
            "tokenizer": tokenizer.to_dict()}


def model_from_checkpoint(path: str | Path) -> tuple[Llama, BPETokenizer]:
    """Rebuild an instruction-tuned model (LoRA merged into plain layers) and its tokenizer from a
    run's folder or its ``checkpoint.pt``."""
    path = Path(path) / "checkpoint.pt" if Path(path).is_dir() else Path(path)
    checkpoint = load_checkpoint(path, {"task": TASK})
    try:
        meta = checkpoint["metadata"]
        if meta.get("phase") != "tune":
            raise CheckpointError(f"{path} holds a model that is not instruction-tuned (phase {meta.get('phase')!r}): "
                                  "it continues text, it does not follow requests; translate with a tuned run's "
                                  "checkpoint.pt (finish an interrupted run with --resume)")
        model = build_model(LlamaConfig(**meta["model"]), meta.get("lora"))
        tokenizer = BPETokenizer.from_dict(meta["tokenizer"])
        model.load_state_dict(checkpoint["model"])
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as error:
        raise CheckpointError(f"{path} is damaged: {' '.join(str(error).split())[:200]}") from None
    if lora_layers(model):
        unload_lora(model)  # the update merged into the base weights: plain Linear layers again
    return model.eval(), tokenizer


# --- the task of python -m utils.train instruct -------------------------------------------------


def check_settings(preset: dict[str, dict], lora_rank: int | None = None) -> None:
    """Every setting of a preset (after ``--set``) checked before any work starts: a ValueError naming it."""
    data, decode, lora = preset["data"], preset["decode"], preset["lora"]
    check_int("data.vocab_size", data["vocab_size"], minimum=256 + len(SPECIAL_TOKENS))
    check_int("data.max_tokens", data["max_tokens"], minimum=1)
    if data.get("train_pairs") is not None:
        check_int("data.train_pairs", data["train_pairs"], minimum=1)
    try:
        model_config = LlamaConfig(vocab_size=data["vocab_size"] + len(CHAT_TOKENS), **preset["model"])
    except (TypeError, ValueError) as error:
        raise ValueError(f"model: {error}") from None
    for section in ("pretrain", "train"):
        try:
            TrainConfig(**preset[section])
        except (TypeError, ValueError) as error:
            raise ValueError(f"{section}: {error}") from None
    if data["max_tokens"] < model_config.block_size:
        raise ValueError(f"data.max_tokens must be >= model.block_size={model_config.block_size} (a batch must "
                         f"hold the longest conversation), got {data['max_tokens']}")
    check_int("decode.beam_size", decode["beam_size"], minimum=1)
    check_number("decode.alpha", decode["alpha"], minimum=0)
    check_int("decode.batch_size", decode.get("batch_size", 100), minimum=1)
    check_number("lora.alpha", lora["alpha"], minimum=1e-12)
    check_number("lora.lr", lora["lr"], minimum=preset["train"]["min_lr"])  # the peak, above the cosine's end
    check_number("lora.dropout", lora.get("dropout", 0.0), minimum=0, maximum=0.999)
    targets = lora["targets"]
    if isinstance(targets, str) or not targets or not all(isinstance(t, str) and t for t in targets):
        raise ValueError(f"lora.targets must be a non-empty list of layer names, got {targets!r}")
    with torch.device("meta"):
        model = Llama(model_config)
        if lora_rank is not None:
            add_lora(model, list(targets), r=lora_rank, alpha=lora["alpha"])


def lora_settings(preset: dict, rank: int | None) -> dict | None:
    """The run's LoRA settings (rank from ``--lora``), or None for full fine-tuning."""
    if rank is None:
        return None
    lora = preset["lora"]
    return {"r": rank, "alpha": lora["alpha"], "targets": list(lora["targets"]), "dropout": lora.get("dropout", 0.0)}


def optimizer_state_bytes(model: nn.Module) -> int:
    """Bytes of AdamW's two moments for the trainable parameters (fp32 each)."""
    return 2 * 4 * parameter_counts(model)[0]


def run(
    preset: dict[str, dict],
    *,
    preset_name: str,
    out: str | Path,
    resume: bool = False,
    device: str = "auto",
    compile: bool = False,
    seed: int = 1337,
    steps: int | None = None,
    lora: int | None = None,
    beam: int | None = None,
    test_sentences: int | None = None,
    settings: list[str] | None = None,
) -> dict:
    """Pretrain, instruction-tune (fully or with LoRA of rank ``lora``), translate and score.

    ``steps`` replaces the tuning steps (``--set pretrain.steps=N`` the pretraining's).
    Writes OUT/checkpoint.pt (the phase in progress, then the tuned model),
    OUT/pretrained.pt (the pretraining's last checkpoint, when there is pretraining),
    OUT/metrics.json and OUT/test_translations.txt; returns the summary.
    """
    out = Path(out)
    checkpoint_path = out / "checkpoint.pt"
    start = time.perf_counter()

    train_pairs, val_pairs, test_pairs = (load_multi30k(split) for split in ("train", "val", "test"))
    data = preset["data"]
    if data.get("train_pairs"):
        train_pairs = train_pairs[: data["train_pairs"]]
    tokenizer = train_tokenizer(train_pairs, data["vocab_size"])
    overrides = dict(device=device, compile=compile, seed=seed)
    model_config, pretrain_config, tune_config = configs(preset, chat_vocab_size(tokenizer), **overrides)
    if steps is not None:
        tune_config = dataclasses.replace(tune_config, steps=steps)
    lora_config = lora_settings(preset, lora)
    if lora_config:  # LoRA's update starts at zero and is scaled by alpha / r: it takes its own peak rate
        tune_config = dataclasses.replace(tune_config, lr=preset["lora"]["lr"])
    block = model_config.block_size

    phase = None
    if resume:
        saved = load_checkpoint(checkpoint_path, {"task": TASK})["metadata"]
        phase = saved.get("phase")
        saved_rank = (saved.get("lora") or {}).get("r")
        if phase == "tune" and saved_rank != lora:
            raise ValueError(f"{checkpoint_path} was tuned {f'with --lora {saved_rank}' if saved_rank else 'fully'}; "
                             f"resume it {f'with --lora {saved_rank}' if saved_rank else 'without --lora'}")

    torch.manual_seed(tune_config.seed)
    model = build_model(model_config)

    # 1. Pretraining on plain captions (skipped when the checkpoint is already tuning).
    pretrain_history, pretrain_seconds = None, 0.0
    if pretrain_config.steps > 0 and phase != "tune":
        stream = pretraining_stream(documents(train_pairs, seed), tokenizer)
        val_stream = pretraining_stream(documents(val_pairs, seed), tokenizer)
        pretrain_config = dataclasses.replace(pretrain_config, eval_every=min(pretrain_config.eval_every,
                                                                              pretrain_config.steps),
                                              warmup_steps=min(pretrain_config.warmup_steps,
                                                               max(1, pretrain_config.steps // 5)))
        trainer = Trainer(model, pretrain_config, batch_at=random_windows(stream, block, pretrain_config.batch_size,
                                                                          seed=seed),
                          evaluate=lambda m: {"val_loss": whole_split_loss(m, val_stream, block)},
                          metadata=metadata(model_config, tokenizer, "pretrain", None), out_dir=out)
        if phase == "pretrain":
            trainer.load(checkpoint_path)
        pretrain_history = trainer.fit()
        pretrain_seconds = trainer.train_seconds
        trainer.save(out / "pretrained.pt")  # the pretraining's last checkpoint, kept when tuning starts

    # 2. Instruction tuning on the conversations, fully or with LoRA.
    if lora_config:
        add_lora(model, lora_config["targets"], r=lora_config["r"], alpha=lora_config["alpha"],
                 dropout=lora_config["dropout"])
    train_examples = encode_examples(train_pairs, tokenizer, block)
    val_examples = encode_examples(val_pairs, tokenizer, block)
    pad = tokenizer.pad_id
    batch_at, per_epoch = epoch_batches(train_examples, data["max_tokens"], pad, seed=seed)
    smoothing = tune_config.label_smoothing
    tune_config = dataclasses.replace(tune_config, eval_every=min(per_epoch, max(1, tune_config.steps)),
                                      warmup_steps=min(tune_config.warmup_steps, max(1, tune_config.steps // 5)))
    trainer = Trainer(model, tune_config, batch_at=batch_at,
                      loss_of=lambda m, batch: answer_loss(m, batch, label_smoothing=smoothing),
                      evaluate=lambda m: {"val_loss": validation_loss(m, val_examples, pad, data["max_tokens"])},
                      metadata=metadata(model_config, tokenizer, "tune", lora_config), out_dir=out)
    if phase == "tune":
        trainer.load(checkpoint_path)
    start_step = trainer.step
    history = trainer.fit()
    if not history["eval_step"] or history["eval_step"][-1] != trainer.step:
        trainer.run_evaluation()
    trainable, total = parameter_counts(model)
    optimizer_bytes = optimizer_state_bytes(model)

    # 3. Translation and scores, on the merged model.
    decode_start = time.perf_counter()
    model.eval()
    if lora_layers(model):
        unload_lora(model)
    if test_sentences:
        val_pairs, test_pairs = val_pairs[:test_sentences], test_pairs[:test_sentences]
    scores = score_translations(lambda sentences, **decoding: translate(model, tokenizer, sentences, **decoding),
                                val_pairs, test_pairs, preset["decode"], beam, out)
    decode_seconds = time.perf_counter() - decode_start

    steps_run = trainer.step - start_step
    summary = {
        "task": TASK,
        "preset": preset_name,
        "device": trainer.device.type,
        "pretrain_steps": pretrain_config.steps,
        "steps": trainer.step,
        "epochs": round(trainer.step / per_epoch, 2),
        "lora": lora,
        "parameters": total,
        "trainable_parameters": trainable,
        "optimizer_state_bytes": optimizer_bytes,
        "pretrain_seconds": round(pretrain_seconds, 2),
        "train_seconds": round(trainer.train_seconds, 2),
        "steps_per_second": round(steps_run / trainer.train_seconds, 2) if trainer.train_seconds > 0 else None,
        "decode_seconds": round(decode_seconds, 2),
        "pretrain_val_loss": (round(pretrain_history["val_loss"][-1], 4) if pretrain_history else None),
        "val_loss": round(history["val_loss"][-1], 4),
        **scores,
        "test_sentences": len(test_pairs),
        "task_seconds": round(time.perf_counter() - start, 2),
        **({"settings": list(settings)} if settings else {}),
        "checkpoint": str(checkpoint_path),
    }
    write_metrics(out, summary, tune_config, model_config, history)
    return summary
