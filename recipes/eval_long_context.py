"""Long-context evaluation of any model (converted or original): perplexity at 1x/2x/4x/8x the training window
(non-overlapping chunks and a sliding window), loss by position, and passkey retrieval.

    python recipes/eval_long_context.py --model out/rope --out_dir out/rope/eval
    python recipes/eval_long_context.py --model out/base --lengths 128 256 512 1024 --stride 64
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hf_posenc.training import load_tokenizer, run_cli
from hf_posenc.training.errors import RecipeError


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", required=True, help="Hub id or local folder (converted or original).")
    parser.add_argument("--out_dir", required=True, help="Where results.json, results.md and the plots go.")
    parser.add_argument("--texts", nargs="+", help="Held-out text files, one document each (default: shipped books).")
    parser.add_argument("--lengths", nargs="+", type=int, help="Context lengths (default: 1x, 2x, 4x, 8x the window).")
    parser.add_argument("--stride", type=int, help="Sliding-window stride (default: half of each length).")
    parser.add_argument("--max_tokens", type=int, default=32768, help="Tokens scored per length and mode.")
    parser.add_argument("--no_sliding", action="store_true", help="Skip the sliding-window perplexity.")
    parser.add_argument("--no_passkey", action="store_true", help="Skip passkey retrieval.")
    parser.add_argument("--passkey_trials", type=int, default=4, help="Passkey trials per length and depth.")
    parser.add_argument("--name", help="Name of the model in the report (default: the folder name).")
    parser.add_argument(
        "--tokenizer_name",
        help="Tokenizer Hub id or folder (default: the model's own); hf_posenc:gpt2 is the GPT-2 tokenizer shipped "
        "with hf_posenc.",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    import transformers

    from hf_posenc import data
    from hf_posenc.evaluation import evaluate_long_context, is_causal_lm, trained_context_length

    args = parse(argv)
    texts = data.texts("eval")
    if args.texts:
        missing = [p for p in args.texts if not Path(p).is_file()]
        if missing:
            raise RecipeError(f"File not found: {missing[0]}")
        texts = [Path(p).read_text(encoding="utf-8") for p in args.texts]
        if not any(t.strip() for t in texts):
            raise RecipeError("The evaluation texts are empty.")
    config = _load_config(args.model)
    heads = config.architectures or []
    if not _causal(config) and not any(h.endswith("ForMaskedLM") for h in heads):
        raise RecipeError(
            f"{args.model} has no language-model head (architectures: {', '.join(heads) or 'none'}); the long-context "
            "evaluation scores a causal or masked LM head. Train one first (recipes/finetune_mlm.py for an encoder)."
        )
    auto = transformers.AutoModelForCausalLM if _causal(config) else transformers.AutoModelForMaskedLM
    tokenizer = load_tokenizer(args.model, args.tokenizer_name)
    model = auto.from_pretrained(args.model, trust_remote_code=True)
    window = trained_context_length(model)
    lengths = args.lengths or [window * f for f in (1, 2, 4, 8)]
    result = evaluate_long_context(
        model,
        tokenizer,
        texts,
        lengths,
        stride=args.stride,
        passkey=not args.no_passkey and is_causal_lm(model),
        out_dir=args.out_dir,
        max_tokens=args.max_tokens,
        sliding=not args.no_sliding,
        passkey_trials=args.passkey_trials,
        name=args.name or Path(args.model).name,
    )
    for record in result["perplexity"]:
        shown = f"{record['perplexity']:.2f}" if record["status"] == "ok" else record["status"]
        print(f"{record['mode']:>8} @ {record['length']:>6}: {shown}")
    print(json.dumps({"out_dir": args.out_dir}))


def _load_config(name: str):
    import transformers

    import hf_posenc  # noqa: F401  (registers the converted model types)

    try:
        return transformers.AutoConfig.from_pretrained(name, trust_remote_code=True)
    except (OSError, ValueError) as err:
        raise RecipeError(f"Could not load model {name!r}: {str(err).splitlines()[0]}") from None


def _causal(config) -> bool:
    heads = config.architectures or []
    return any(h.endswith(("LMHeadModel", "ForCausalLM")) for h in heads) or bool(getattr(config, "is_decoder", False))


if __name__ == "__main__":
    run_cli(main)
