"""The book's presets, in one table: each name gives a model's sizes and the run that trains it.

Two presets per model, one word apart: ``cpu`` (minutes on a laptop's two cores) and
``gpu`` (one GPU). The same name means the same model everywhere:
``GPTConfig.preset("cpu")`` (chapter 10) builds the model that
``python -m utils.train gpt --preset cpu`` (chapter 11) trains, and
``TransformerConfig.preset("cpu")`` the one ``translate --preset cpu`` (chapter 12) trains.

* :data:`GPT` — chapter 11's character-level GPT on Tiny Shakespeare: ``model``
  (GPTConfig fields, all but ``vocab_size``) and ``train`` (TrainConfig fields);
* :data:`LLAMA` — chapter 15's Llama-style model on the same data and runs as :data:`GPT`;
* :data:`TRANSLATOR` — chapter 12's German → English Transformer: ``data`` (the BPE's
  size, batches of at most ``max_tokens`` padded positions), ``model`` (TransformerConfig
  fields), ``train`` (TrainConfig fields) and ``decode`` (beam search).

Pure data: no imports, so :mod:`utils.models` can read it. How each was chosen is in
benchmarks/README.md.
"""

GPT: dict[str, dict[str, dict]] = {
    # Tuned on 2 CPU cores for the lowest exact validation loss in about 20 s of training (benchmarks/README.md):
    # on a CPU a smaller model that takes more steps beats a larger one that takes fewer. Half of nanoGPT's CPU
    # depth (2 blocks) and half its width (C = 64, d_ff = 4C), batches of 32 windows, a peak learning rate of
    # 2e-2 (twenty times nanoGPT's) after 100 warm-up steps, and the cosine run down over 1,000 steps.
    "cpu": {
        "model": dict(block_size=64, C=64, n_heads=4, n_layers=2, d_ff=256, dropout=0.0),
        "train": dict(steps=1000, batch_size=32, lr=2e-2, min_lr=1e-4, warmup_steps=100, weight_decay=0.1,
                      betas=(0.9, 0.99), grad_clip=1.0, eval_every=1000),
    },
    # nanoGPT's baby GPT shape for Tiny Shakespeare (6 layers, 6 heads, C = 384, context 256, batches of 64),
    # on a shorter run: 1,500 steps at a peak of 2e-3 with dropout 0.1 instead of nanoGPT's 5,000 at 1e-3 with
    # 0.2. Of eight schedules run side by side on an H200 (benchmarks/README.md), it was the shortest to end at or
    # below nanoGPT's best validation loss (1.4697): 1.454 there, 1.449 from the command line.
    "gpu": {
        "model": dict(block_size=256, C=384, n_heads=6, n_layers=6, dropout=0.1),
        "train": dict(steps=1500, batch_size=64, lr=2e-3, min_lr=1e-4, warmup_steps=100, weight_decay=0.1,
                      betas=(0.9, 0.99), grad_clip=1.0, eval_every=500),
    },
}


LLAMA: dict[str, dict[str, dict]] = {
    # Chapter 15's Llama-style model (``gpt --arch llama``), trained by the GPT's runs above.
    # cpu: chapter 11's cpu preset (2 blocks, C = 64, 4 heads, LayerNorm, ReLU network of 4C, biases) with RoPE,
    # the winner of chapter 15's race at 1,000 steps on 2 CPU cores (3 seeds). All four changes together won two
    # seeds of three and lost the third badly at chapter 11's learning rate; SwiGLU alone lost all three.
    "cpu": {
        "model": dict(block_size=64, C=64, n_heads=4, n_kv_heads=4, n_layers=2, d_ff=256, dropout=0.0, norm="layer",
                      feed_forward="relu", bias=True),
        "train": dict(GPT["cpu"]["train"]),
    },
    # gpu: the GPT gpu preset's sizes, with 6 query heads sharing 2 key/value heads.
    "gpu": {
        "model": dict(block_size=256, C=384, n_heads=6, n_kv_heads=2, n_layers=6, dropout=0.1),
        "train": dict(GPT["gpu"]["train"]),
    },
}


TRANSLATOR: dict[str, dict[str, dict]] = {
    # Each preset trains a fixed number of steps, so the same command gives the same model on every machine
    # (--minutes trains for a time budget instead). The cpu preset's 4,000 steps (8 epochs) were sized to fit
    # 10 minutes on the book's 2-core CPU from a run of 3,897 steps in 517 s of training, 541 s in all
    # (28 November 2026); on 2 December 2026 the 4,000 steps took 646 s of training, 679 s in all.
    "cpu": {
        "data": dict(vocab_size=4000, max_tokens=2000),
        # 2 + 2 layers of C = 128 take twice the steps of 3 + 3 layers of C = 192 in the same minutes, and
        # won on the validation split (BLEU 38.64 against 37.16 for 3 + 3 layers with label smoothing 0.1 at
        # 2,000 steps; label smoothing 0.1 on this shape: 37.94), one thread each (benchmarks/README.md).
        "model": dict(max_len=128, C=128, n_heads=4, n_encoder_layers=2, n_decoder_layers=2, d_ff=512,
                      dropout=0.1, norm_first=False),
        "train": dict(steps=4000, lr=2e-3, min_lr=1e-4, warmup_steps=400, schedule="cosine", weight_decay=0.01,
                      betas=(0.9, 0.98), grad_clip=1.0, label_smoothing=0.0),
        "decode": dict(beam_size=5, alpha=1.0),  # the best of 7 settings on the validation split
    },
    "gpu": {  # about 30 epochs of 121 steps
        "data": dict(vocab_size=8000, max_tokens=8000),
        "model": dict(max_len=128, C=512, n_heads=8, n_encoder_layers=6, n_decoder_layers=6, d_ff=2048,
                      dropout=0.2, norm_first=True),
        "train": dict(steps=3600, lr=1e-3, min_lr=5e-5, warmup_steps=1000, schedule="cosine", weight_decay=0.01,
                      betas=(0.9, 0.98), grad_clip=1.0, label_smoothing=0.1),
        "decode": dict(beam_size=5, alpha=0.6),
    },
}


INSTRUCT: dict[str, dict[str, dict]] = {
    # Chapter 17's decoder-only translator (``python -m utils.train instruct``): chapter 12's data and BPE,
    # chapter 15's block. ``data.max_tokens`` counts padded input positions of a tuning batch; ``pretrain``
    # trains on plain captions (batches of ``batch_size`` windows of ``model.block_size`` tokens) before
    # ``train`` tunes on the conversations; ``lora`` is used with ``--lora RANK``.
    # cpu: chapter 15's CPU winner (LayerNorm, ReLU, biases, RoPE) at chapter 12's width, 4 blocks (one stack
    # where the translator has 2 + 2), its dropout, batches of 2,000 positions, peak rate and cosine. Two
    # splits of the same ~10 minutes were compared on the validation split (benchmarks/README.md): 400 steps
    # of pretraining + 1,900 of tuning (val loss 2.046, val BLEU 32.72) against 2,400 of tuning from scratch
    # (2.124, 32.52); the first is the preset.
    "cpu": {
        "data": dict(vocab_size=4000, max_tokens=2000),
        "model": dict(block_size=128, C=128, n_heads=4, n_layers=4, d_ff=512, dropout=0.1,
                      norm="layer", feed_forward="relu", bias=True),
        "pretrain": dict(steps=400, batch_size=16, lr=2e-3, min_lr=2e-3, warmup_steps=100, schedule="cosine",
                         weight_decay=0.01, betas=(0.9, 0.98), grad_clip=1.0, eval_every=400),
        "train": dict(steps=1900, lr=2e-3, min_lr=1e-4, warmup_steps=200, schedule="cosine", weight_decay=0.01,
                      betas=(0.9, 0.98), grad_clip=1.0, label_smoothing=0.0),
        "lora": dict(alpha=16, lr=5e-3, targets=("q_proj", "k_proj", "v_proj", "out_proj", "linear1", "linear2"),
                     dropout=0.0),
        "decode": dict(beam_size=5, alpha=1.0),
    },
    "gpu": {
        "data": dict(vocab_size=8000, max_tokens=8000),
        "model": dict(block_size=160, C=512, n_heads=8, n_layers=8, dropout=0.2, norm="rms",
                      feed_forward="swiglu", bias=False),
        "pretrain": dict(steps=1000, batch_size=64, lr=1e-3, min_lr=1e-3, warmup_steps=200, schedule="cosine",
                         weight_decay=0.1, betas=(0.9, 0.95), grad_clip=1.0, eval_every=500),
        "train": dict(steps=3600, lr=1e-3, min_lr=5e-5, warmup_steps=500, schedule="cosine", weight_decay=0.01,
                      betas=(0.9, 0.98), grad_clip=1.0, label_smoothing=0.1),
        "lora": dict(alpha=16, lr=2e-3, targets=("q_proj", "k_proj", "v_proj", "out_proj", "gate_proj", "up_proj",
                                        "down_proj"), dropout=0.0),
        "decode": dict(beam_size=5, alpha=0.6),
    },
}
