"""Translation, German → English on Multi30k: data, batches, training and scoring (chapter 12).

The task of ``python -m utils.train translate``:

* **Tokenizer** — one byte-level BPE (chapter 01) *shared* by both languages and
  trained on the training split only. German and English captions share names,
  numbers, punctuation and many word pieces, so one vocabulary covers both with
  fewer tokens than two would, and one ``(V, C)`` matrix can serve as the source
  embedding, the target embedding and the output layer (three-way weight tying,
  Press & Wolf, 2017): fewer parameters to learn in a few minutes.
* **Pairs** — the source is the German ids; the decoder reads ``<SOS> + English``
  and is trained to predict ``English + <EOS>`` (teacher forcing, chapter 09).
* **Batches by length** (:func:`bucket_batches`) — pairs sorted by length and cut
  into batches of at most ``max_tokens`` padded positions, so a batch holds
  sentences of similar length and little padding; :func:`padding_share` measures it.
* **Loss** — :func:`utils.train.sequence_loss` with ``<PAD>`` targets ignored and
  label smoothing; the padding masks come from ``ids == <PAD>`` inside the model.
* **Scoring** — validation loss per epoch; test translations by greedy decoding and
  beam search (:mod:`utils.generate`), scored with BLEU (:mod:`utils.bleu`), checked
  against sacreBLEU.
* :data:`PRESETS` ``cpu`` (4,000 steps, 10–11 minutes on two laptop cores) and ``gpu``;
  each trains a fixed number of steps (``--minutes``: a time budget instead).
"""

from __future__ import annotations

import dataclasses
import random
import time
from pathlib import Path

import torch

from utils import distributed, presets
from utils.bleu import corpus_bleu, sacrebleu_score
from utils.checkpoints import CheckpointError, load_checkpoint, write_metrics
from utils.checks import check_int, check_number
from utils.data import load_multi30k
from utils.generate import beam_translate
from utils.loop import sequence_loss
from utils.models import Transformer, TransformerConfig, count_parameters
from utils.tokenizers import SPECIAL_TOKENS, BPETokenizer
from utils.trainer import TrainConfig, Trainer, configure_optimizer, resolve_device

TASK = "translate"

PRESETS = presets.TRANSLATOR  # cpu and gpu: data, model, train and decode settings each


# What ``--set SECTION.FIELD=VALUE`` may change: each section's settings.
SETTINGS = {
    "data": ("vocab_size", "max_tokens", "train_pairs"),
    "model": tuple(f.name for f in dataclasses.fields(TransformerConfig)
                   if f.name not in ("src_vocab_size", "tgt_vocab_size", "pad_id")),
    "train": tuple(f.name for f in dataclasses.fields(TrainConfig)),
    "decode": ("beam_size", "alpha", "batch_size"),
}


# --- data -------------------------------------------------------------------------------------


def train_tokenizer(train_pairs: list[tuple[str, str]], vocab_size: int) -> BPETokenizer:
    """One BPE for both languages, trained on the training pairs only (never on val or test)."""
    return BPETokenizer.from_text([text for pair in train_pairs for text in pair], vocab_size, specials=True)


def encode_pairs(pairs: list[tuple[str, str]], tokenizer: BPETokenizer, max_len: int | None = None):
    """Text pairs → (German ids, English ids), without special tokens; ids cut to fit ``max_len``.

    The decoder reads ``<SOS> + English`` (1 + n ids) and predicts ``English + <EOS>``,
    so an English side may hold at most ``max_len - 1`` ids.
    """
    encoded = []
    for german, english in pairs:
        src, tgt = tokenizer.encode(german), tokenizer.encode(english)
        if max_len is not None:
            src, tgt = src[:max_len], tgt[: max_len - 1]
        encoded.append((src, tgt))
    return encoded


def pair_lengths(encoded: list[tuple[list[int], list[int]]]) -> list[tuple[int, int]]:
    """(T_enc, T_dec) of each pair: the source's ids, and the target's ids plus one (<SOS> or <EOS>)."""
    return [(len(src), len(tgt) + 1) for src, tgt in encoded]


def batch_positions(lengths: list[tuple[int, int]], batch: list[int]) -> int:
    """Positions of a batch once padded: B · (longest source + longest target)."""
    return len(batch) * (max(lengths[i][0] for i in batch) + max(lengths[i][1] for i in batch))


def padding_share(lengths: list[tuple[int, int]], batches: list[list[int]]) -> float:
    """The fraction of all padded positions (sources and targets) that are ``<PAD>``."""
    real = sum(lengths[i][0] + lengths[i][1] for batch in batches for i in batch)
    total = sum(batch_positions(lengths, batch) for batch in batches)
    return 1 - real / total


def random_batches(n: int, batch_size: int, seed: int = 0) -> list[list[int]]:
    """The plain way: shuffle the pairs and cut them into batches of ``batch_size``."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def bucket_batches(lengths: list[tuple[int, int]], max_tokens: int, seed: int | None = 0) -> list[list[int]]:
    """Batches of pair indices with similar lengths, each at most ``max_tokens`` padded positions.

    Sort the pairs by (source length, target length) — ties in a random order drawn
    from ``seed``, so every epoch's batches differ a little — then walk the sorted
    list and start a new batch whenever the next pair would push
    :func:`batch_positions` past ``max_tokens``. The batches come back shuffled.
    ``seed=None`` (validation) is deterministic: ties in index order, batches in sorted
    order, the same in every process. Every pair is in exactly one batch.
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    too_long = [i for i, (s, t) in enumerate(lengths) if s + t > max_tokens]
    if too_long:
        i = too_long[0]
        raise ValueError(f"pair {i} alone has {sum(lengths[i])} positions, more than max_tokens={max_tokens}")
    rng = random.Random(seed)
    ties = range(len(lengths)) if seed is None else [rng.random() for _ in lengths]  # None: the same everywhere
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i][0], lengths[i][1], ties[i]))
    batches, batch, longest_src, longest_tgt = [], [], 0, 0
    for i in order:
        s, t = lengths[i]
        grown_src, grown_tgt = max(longest_src, s), max(longest_tgt, t)
        if batch and (len(batch) + 1) * (grown_src + grown_tgt) > max_tokens:
            batches.append(batch)
            batch, grown_src, grown_tgt = [], s, t
        batch.append(i)
        longest_src, longest_tgt = grown_src, grown_tgt
    if batch:
        batches.append(batch)
    if seed is not None:
        rng.shuffle(batches)
    return batches


def collate(encoded: list[tuple[list[int], list[int]]], batch: list[int], tokenizer: BPETokenizer):
    """Pairs ``batch`` → ``(src, tgt_in, tgt_out)``, each (B, T) and padded with ``<PAD>`` on the right.

    ``tgt_in`` is ``<SOS> + English`` and ``tgt_out`` is ``English + <EOS>``: position t
    of the decoder predicts token t + 1 of the sentence.
    """
    pad, sos, eos = tokenizer.pad_id, tokenizer.sos_id, tokenizer.eos_id
    T_enc = max(len(encoded[i][0]) for i in batch)
    T_dec = max(len(encoded[i][1]) for i in batch) + 1
    src = torch.full((len(batch), T_enc), pad, dtype=torch.long)
    tgt_in = torch.full((len(batch), T_dec), pad, dtype=torch.long)
    tgt_out = torch.full((len(batch), T_dec), pad, dtype=torch.long)
    for row, i in enumerate(batch):
        s, t = encoded[i]
        src[row, : len(s)] = torch.tensor(s, dtype=torch.long)
        tgt_in[row, : len(t) + 1] = torch.tensor([sos, *t], dtype=torch.long)
        tgt_out[row, : len(t) + 1] = torch.tensor([*t, eos], dtype=torch.long)
    return src, tgt_in, tgt_out


def batches_by_epoch(lengths: list[tuple[int, int]], max_tokens: int, make_batch, seed: int = 0):
    """``(batch_at, batches_per_epoch)`` for any examples batched by length (chapters 12 and 17).

    ``batch_at(i)`` is ``make_batch(indices)`` of micro-batch ``i`` of a run over many
    epochs: epoch ``e = i // batches_per_epoch`` uses :func:`bucket_batches` with seed
    ``seed + e``; a pure function of ``i``, as the trainer needs for exact resumes.
    """
    n = len(bucket_batches(lengths, max_tokens, seed=None))  # the count does not depend on the seed
    cache: dict[int, list[list[int]]] = {}

    def batch_at(i: int):
        epoch = i // n
        if epoch not in cache:
            cache.clear()
            cache[epoch] = bucket_batches(lengths, max_tokens, seed=seed + epoch)
        return make_batch(cache[epoch][i % n])

    return batch_at, n


def epoch_batches(encoded, tokenizer: BPETokenizer, max_tokens: int, seed: int = 0):
    """``(batch_at, batches_per_epoch)`` of the translation pairs: :func:`batches_by_epoch` with
    :func:`collate`."""
    return batches_by_epoch(pair_lengths(encoded), max_tokens, lambda batch: collate(encoded, batch, tokenizer), seed)


# --- model, loss and evaluation ----------------------------------------------------------


def build_model(model_config: TransformerConfig) -> Transformer:
    """The chapter-10 Transformer with one embedding matrix for source, target and output layer."""
    if model_config.src_vocab_size != model_config.tgt_vocab_size:
        raise ValueError("a shared vocabulary needs src_vocab_size == tgt_vocab_size, got "
                         f"{model_config.src_vocab_size} and {model_config.tgt_vocab_size}")
    model = Transformer(model_config)
    model.src_embedding.weight = model.tgt_embedding.weight  # (V, C), also the output layer's (tie_weights)
    return model


def translation_loss(model: Transformer, batch, *, pad_id: int, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy of the decoder's predictions against ``tgt_out``, ``<PAD>`` targets ignored."""
    src, tgt_in, tgt_out = batch
    logits = model(src, tgt_in)  # (B, T_dec, V); padding masks from ids == pad_id
    return sequence_loss(logits, tgt_out, ignore_index=pad_id, label_smoothing=label_smoothing)


@torch.no_grad()
def validation_loss(model: Transformer, encoded, tokenizer: BPETokenizer, max_tokens: int) -> float:
    """Mean cross-entropy per target token over the whole split (no label smoothing).

    Under torchrun each of the W processes scores every W-th batch and the sums are added up."""
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for batch in distributed.share_of(bucket_batches(pair_lengths(encoded), max_tokens, seed=None)):
        src, tgt_in, tgt_out = (t.to(device) for t in collate(encoded, batch, tokenizer))
        n = int((tgt_out != tokenizer.pad_id).sum())
        total += translation_loss(model, (src, tgt_in, tgt_out), pad_id=tokenizer.pad_id).item() * n
        count += n
    total, count = distributed.sum_over_ranks(total, count)
    return total / count


def strip_translation(ids: list[int], tokenizer: BPETokenizer) -> list[int]:
    """The ids between ``<SOS>`` and the first ``<EOS>``."""
    ids = ids[1:] if ids and ids[0] == tokenizer.sos_id else ids
    return ids[: ids.index(tokenizer.eos_id)] if tokenizer.eos_id in ids else ids


def check_sentences(sentences) -> list[str]:
    """``sentences`` as a list of strings, or a ValueError: one string alone would be translated
    character by character, and ``None`` would pass as an empty sentence."""
    if isinstance(sentences, str | bytes) or not hasattr(sentences, "__iter__"):
        raise ValueError(f"sentences must be a list of strings, got {type(sentences).__name__}"
                         + (": wrap one sentence in a list, [sentence]" if isinstance(sentences, str) else ""))
    sentences = list(sentences)
    for i, sentence in enumerate(sentences):
        if not isinstance(sentence, str):
            raise ValueError(f"sentence {i} must be a string, got {type(sentence).__name__}")
    return sentences


@torch.no_grad()
def translate(
    model: Transformer,
    tokenizer: BPETokenizer,
    sentences: list[str],
    *,
    beam_size: int = 1,
    alpha: float = 0.6,
    batch_size: int = 100,
    extra_tokens: int = 10,
) -> list[str]:
    """German sentences → English, in the same order (sorted by length inside, for less padding).

    A translation may have up to 1.5 times as many tokens as the longest source of its
    batch plus ``extra_tokens`` (English captions are about as long as German ones).
    """
    batch_size = check_int("batch_size", batch_size, minimum=1)  # before any work, not a traceback after it
    extra_tokens = check_int("extra_tokens", extra_tokens, minimum=0)
    beam_size = check_int("beam_size", beam_size, minimum=1)
    sentences = check_sentences(sentences)
    device = next(model.parameters()).device
    max_len = model.config.max_len
    encoded = [tokenizer.encode(s)[:max_len] or [tokenizer.eos_id] for s in sentences]
    order = sorted(range(len(sentences)), key=lambda i: len(encoded[i]))
    out: list[str] = [""] * len(sentences)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        T = max(len(encoded[i]) for i in chunk)
        src = torch.full((len(chunk), T), tokenizer.pad_id, dtype=torch.long)
        for row, i in enumerate(chunk):
            src[row, : len(encoded[i])] = torch.tensor(encoded[i])
        ids = beam_translate(model, src.to(device), sos_id=tokenizer.sos_id, eos_id=tokenizer.eos_id,
                             pad_id=tokenizer.pad_id, beam_size=beam_size, alpha=alpha,
                             max_new_tokens=T * 3 // 2 + extra_tokens, use_cache=True).cpu()  # one copy
        for row, i in enumerate(chunk):
            text = tokenizer.decode(strip_translation(ids[row].tolist(), tokenizer), skip_specials=True)
            out[i] = text.strip()
    return out


def steps_per_second(model: Transformer, config: TrainConfig, batch_at, pad_id: int, label_smoothing: float,
                     n: int = 12) -> float:
    """Training steps per second of ``model`` on this machine, timed on the batches ``batch_at(0..n-1)``.

    The model's weights are put back afterwards: it is a measurement, not training.
    The first two steps (memory allocation) are not timed.
    """
    device = resolve_device(config.device)
    model.to(device).train()
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    optimizer = configure_optimizer(model, config)
    for i in range(n):
        if i == 2:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        batch = tuple(t.to(device) for t in batch_at(i))
        translation_loss(model, batch, pad_id=pad_id, label_smoothing=label_smoothing).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    model.load_state_dict(saved)
    return (n - 2) / seconds


def bleu_of(hypotheses: list[str], references: list[str]) -> tuple[float, str]:
    """sacreBLEU (cased, detokenized, 13a) with its signature; our own BLEU must agree with it."""
    score, signature = sacrebleu_score(hypotheses, references)
    ours = corpus_bleu(hypotheses, references).score
    if abs(ours - score) > 1e-6:
        raise AssertionError(f"utils.bleu gives {ours}, sacreBLEU {score}: they must agree")
    return score, signature


def score_translations(translate_fn, val_pairs, test_pairs, decode: dict, beam: int | None, out: Path) -> dict:
    """The scores of a command-line run (chapters 12 and 17), decoded as the preset says.

    ``translate_fn(sentences, beam_size=..., alpha=..., batch_size=...)`` translates German
    sentences. Validation BLEU with the run's beam (the score to choose settings on, never
    the test's), then the test split greedily and with the beam; the beam's test
    translations go to OUT/test_translations.txt. Returns ``bleu``, ``bleu_greedy``,
    ``bleu_val``, ``beam`` and ``bleu_signature``.
    """
    beam_size = beam or decode["beam_size"]
    decoding = dict(beam_size=beam_size, alpha=decode["alpha"], batch_size=decode.get("batch_size", 100))
    bleu_val, _ = bleu_of(translate_fn([de for de, _ in val_pairs], **decoding), [en for _, en in val_pairs])
    sources, references = [de for de, _ in test_pairs], [en for _, en in test_pairs]
    bleu_greedy, _ = bleu_of(translate_fn(sources, beam_size=1), references)
    beamed = translate_fn(sources, **decoding)
    bleu, signature = bleu_of(beamed, references)
    (Path(out) / "test_translations.txt").write_text("\n".join(beamed) + "\n", encoding="utf-8")
    return {"bleu": round(bleu, 2), "bleu_greedy": round(bleu_greedy, 2), "bleu_val": round(bleu_val, 2),
            "beam": beam_size, "bleu_signature": signature}


# --- presets, checkpoints and the command line --------------------------------------------------


def configs(preset: str | dict, vocab_size: int, **train_overrides) -> tuple[TransformerConfig, TrainConfig]:
    """The model and training settings of a preset (a name or a dict like ``PRESETS["cpu"]``)."""
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
        preset = PRESETS[preset]
    try:
        model_config = TransformerConfig(src_vocab_size=vocab_size, tgt_vocab_size=vocab_size, pad_id=0,
                                         **preset["model"])
        return model_config, TrainConfig(**{**preset["train"], **train_overrides})
    except TypeError as error:  # an unknown field name
        raise ValueError(str(error)) from None


def plan_steps(
    preset_steps: int, steps_per_epoch: int, *, steps: int | None = None, epochs: int | None = None,
    minutes: float | None = None, resume_steps: int | None = None,
) -> tuple[int, bool]:
    """``(steps, budgeted)``: how many steps a run trains, and whether it trains for a time budget instead.

    ``--steps`` wins, then a resumed run's own total, then ``--epochs`` (``epochs · steps_per_epoch``),
    then ``--minutes`` (budgeted: the caller plans the steps from timed ones), then the preset's fixed
    number of steps, which gives the same model on every machine.
    """
    if steps is not None:
        return steps, False
    if resume_steps is not None:
        return resume_steps, False
    if epochs:
        return epochs * steps_per_epoch, False
    if minutes:
        return preset_steps, True
    return preset_steps, False


def metadata(model_config: TransformerConfig, tokenizer: BPETokenizer) -> dict:
    """What a checkpoint of this task must match: the task, the model's sizes, the tokenizer."""
    return {"task": TASK, "model": dataclasses.asdict(model_config), "shared_embeddings": True,
            "tokenizer": tokenizer.to_dict()}


def model_from_checkpoint(path: str | Path) -> tuple[Transformer, BPETokenizer]:
    """Rebuild a trained translator and its tokenizer from a run's folder or its ``checkpoint.pt``."""
    path = Path(path) / "checkpoint.pt" if Path(path).is_dir() else Path(path)
    checkpoint = load_checkpoint(path, {"task": TASK})
    try:
        model = build_model(TransformerConfig(**checkpoint["metadata"]["model"]))
        tokenizer = BPETokenizer.from_dict(checkpoint["metadata"]["tokenizer"])
        model.load_state_dict(checkpoint["model"])
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as error:
        raise CheckpointError(f"{path} is damaged: {' '.join(str(error).split())[:200]}") from None
    return model.eval(), tokenizer


# --- the task of python -m utils.train translate ---------------------------------------------------


def check_settings(preset: dict[str, dict]) -> None:
    """Every setting of a preset (after ``--set``) checked before any work starts: a ValueError naming it.

    ``data``, ``model``, ``train`` and ``decode`` in turn; the model is then built on the
    ``meta`` device (shapes only, no memory), which runs its own checks.
    """
    data, decode = preset["data"], preset["decode"]
    check_int("data.vocab_size", data["vocab_size"], minimum=256 + len(SPECIAL_TOKENS))  # the bytes and specials
    check_int("data.max_tokens", data["max_tokens"], minimum=1)
    if data.get("train_pairs") is not None:
        check_int("data.train_pairs", data["train_pairs"], minimum=1)
    try:
        model_config = TransformerConfig(src_vocab_size=data["vocab_size"], tgt_vocab_size=data["vocab_size"],
                                         pad_id=0, **preset["model"])
    except (TypeError, ValueError) as error:
        raise ValueError(f"model: {error}") from None
    try:
        TrainConfig(**preset["train"])
    except (TypeError, ValueError) as error:
        raise ValueError(f"train: {error}") from None
    longest = 2 * model_config.max_len  # a source of max_len ids and a target of max_len - 1 ids, plus one
    if data["max_tokens"] < longest:
        raise ValueError(f"data.max_tokens must be >= {longest} (2 · model.max_len): a batch must hold the "
                         f"longest pair, got {data['max_tokens']}")
    check_int("decode.beam_size", decode["beam_size"], minimum=1)
    check_number("decode.alpha", decode["alpha"], minimum=0)  # the beam's early stop is exact for alpha >= 0
    check_int("decode.batch_size", decode.get("batch_size", 100), minimum=1)
    with torch.device("meta"):
        build_model(model_config)


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
    epochs: int | None = None,
    minutes: float | None = None,
    beam: int | None = None,
    test_sentences: int | None = None,
    settings: list[str] | None = None,
) -> dict:
    """Train (or resume) the translator of a preset, translate the validation and test splits, score them.

    ``preset`` is a dict like ``PRESETS["cpu"]`` (the command line applies ``--set`` to it).
    The run trains the preset's steps, or ``steps``, or ``epochs`` passes, or for about
    ``minutes`` (:func:`plan_steps`); ``beam`` replaces the preset's beam width and
    ``test_sentences`` keeps only the first sentences of validation and test. Writes
    OUT/checkpoint.pt, OUT/metrics.json and OUT/test_translations.txt; returns the summary.
    """
    out = Path(out)
    checkpoint_path = out / "checkpoint.pt"

    train_pairs, val_pairs, test_pairs = (load_multi30k(split) for split in ("train", "val", "test"))
    data = preset["data"]
    if data.get("train_pairs"):  # a quick run on the first pairs only (tests)
        train_pairs = train_pairs[: data["train_pairs"]]
    tokenizer = train_tokenizer(train_pairs, data["vocab_size"])
    model_config, _ = configs(preset, tokenizer.vocab_size)
    pad, smoothing = tokenizer.pad_id, preset["train"]["label_smoothing"]
    train_encoded = encode_pairs(train_pairs, tokenizer, model_config.max_len)
    val_encoded = encode_pairs(val_pairs, tokenizer, model_config.max_len)
    batch_at, per_epoch = epoch_batches(train_encoded, tokenizer, data["max_tokens"], seed=seed)
    # Under torchrun each of the W processes takes its own micro-batch at every step: an epoch is
    # per_epoch / W steps.
    processes = distributed.launched_world_size()  # the process group is joined later, by the Trainer
    steps_per_epoch = max(1, per_epoch // processes)
    overrides = dict(device=device, compile=compile, seed=seed, eval_every=steps_per_epoch)
    model_config, train_config = configs(preset, tokenizer.vocab_size, **overrides)
    torch.manual_seed(train_config.seed)
    model = build_model(model_config)
    steps, budgeted = plan_steps(train_config.steps, steps_per_epoch, steps=steps, epochs=epochs, minutes=minutes,
                                 resume_steps=(load_checkpoint(checkpoint_path, {"task": TASK})["config"]["steps"]
                                               if resume and steps is None else None))
    if budgeted:  # the first plan, from a few timed steps: a validation pass costs about 1/25 of an epoch
        steps = int(minutes * 60 * 0.96 * steps_per_second(model, train_config, batch_at, pad, smoothing))
    # A short run warms up over at most a fifth of its steps. A budgeted run's first plan comes from a few
    # timed steps, which a burst of load from other programs can make several times too short (fit_for
    # re-plans the steps, not the warm-up), so it keeps the preset's warm-up unless the plan is below twice it.
    warmup = min(train_config.warmup_steps, max(steps // (2 if budgeted else 5), 1))
    train_config = dataclasses.replace(train_config, steps=steps, warmup_steps=warmup)
    trainer = Trainer(
        model,
        train_config,
        batch_at=batch_at,
        loss_of=lambda m, batch: translation_loss(m, batch, pad_id=pad, label_smoothing=smoothing),
        evaluate=lambda m: {"val_loss": validation_loss(m, val_encoded, tokenizer, data["max_tokens"])},
        metadata=metadata(model_config, tokenizer),
        out_dir=out,
    )
    if resume:
        trainer.load(checkpoint_path)
    start_step = trainer.step
    history = trainer.fit_for(minutes * 60) if budgeted else trainer.fit()
    if not history["eval_step"] or history["eval_step"][-1] != trainer.step:
        trainer.run_evaluation()  # e.g. --steps 0, or a resumed run that was already complete

    if not trainer.is_main:  # under torchrun, rank 0 alone translates the test split and writes the results
        return {"preset": preset_name, "device": trainer.device.type, "steps": trainer.step}
    decode_start = time.perf_counter()
    model.eval()
    if test_sentences:  # a quick check: the first N sentences of validation and test only
        val_pairs, test_pairs = val_pairs[:test_sentences], test_pairs[:test_sentences]
    scores = score_translations(lambda sentences, **decoding: translate(model, tokenizer, sentences, **decoding),
                                val_pairs, test_pairs, preset["decode"], beam, out)
    decode_seconds = time.perf_counter() - decode_start

    steps_run = trainer.step - start_step
    summary = {
        "task": TASK,
        "preset": preset_name,
        "device": trainer.device.type,
        "epochs": round(trainer.step * processes / per_epoch, 2),
        "steps": trainer.step,
        "parameters": count_parameters(model),
        "train_seconds": round(trainer.train_seconds, 2),
        "steps_per_second": round(steps_run / trainer.train_seconds, 2) if trainer.train_seconds > 0 else None,
        "decode_seconds": round(decode_seconds, 2),
        "val_loss": round(history["val_loss"][-1], 4),
        **scores,
        "test_sentences": len(test_pairs),
        **({"settings": list(settings)} if settings else {}),
        "checkpoint": str(checkpoint_path),
    }
    write_metrics(out, summary, train_config, model_config, history)
    return summary
