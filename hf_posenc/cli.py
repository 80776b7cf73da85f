"""The `hf-posenc` command line: convert, push, eval, encodings, info.

Exit codes: 0 success, 1 the command failed (bad input, unsupported model, failed check), 2 usage error,
3 the upload failed after the checkpoint was saved locally (the message says how to retry).
"""

from __future__ import annotations

import ast
import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

EXIT_FAILED = 1
EXIT_UPLOAD_FAILED = 3

app = typer.Typer(
    help="Swap the learned absolute positions of GPT-2/BERT-style models for RoPE, T5 bias, ALiBi and more.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
state = {"debug": False, "quiet": False}  # quiet: set by the console script (run), not by in-process callers


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks and library warnings.")] = False,
) -> None:
    """hf-posenc: convert checkpoints, evaluate long contexts, inspect and publish converted models."""
    state["debug"] = debug


@contextlib.contextmanager
def failures() -> Iterator[None]:
    """Turn any exception into one readable line on stderr and an exit code (a traceback only with --debug)."""
    if state["quiet"] and not state["debug"]:
        quiet_libraries()
    from .hub import UploadError

    try:
        yield
    except (typer.Exit, typer.BadParameter):
        raise
    except KeyboardInterrupt:
        err.print("[red]interrupted[/red]")
        raise typer.Exit(130) from None
    except Exception as error:
        if state["debug"]:
            raise
        code = EXIT_UPLOAD_FAILED if isinstance(error, UploadError) else EXIT_FAILED
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        err.print(f"[red]error:[/red] {message}", highlight=False, markup=True)
        raise typer.Exit(code) from None


def parse_value(text: str) -> Any:
    """A value as `hf-posenc encodings` prints it (a Python literal: True, None, {'rope_type': 'yarn'}) or as JSON
    (true, null, {"rope_type": "yarn"}); text that is neither (interpolate) is a string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def parse_options(pairs: list[str]) -> dict[str, Any]:
    """`key=value` pairs, each value read by `parse_value`; a key given twice is refused."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise typer.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--option")
        if key in options:
            raise typer.BadParameter(f"{key} is given twice", param_hint="--option")
        options[key] = parse_value(value)
    return options


def load_model(source: str) -> tuple[Any, Any]:
    """The model (its saved head class) and tokenizer (None when the folder has none) of a Hub id or folder."""
    import transformers

    from .hub.card import auto_class_for

    if not _is_local(source) and (source.startswith((".", "/", "~")) or source.count("/") > 1):
        raise FileNotFoundError(f"{source} is neither an existing folder nor a Hub model id.")
    with err.status(f"Loading {source} ..."):
        config = transformers.AutoConfig.from_pretrained(source)
        architecture = (config.architectures or [""])[0]
        model_cls = getattr(transformers, architecture, None) or getattr(transformers, auto_class_for([architecture]))
        model = model_cls.from_pretrained(source)
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(source)
        except Exception:
            tokenizer = None
    return model.eval(), tokenizer


def _is_local(source: str) -> bool:
    return Path(source).expanduser().exists()


@app.command()
def convert(
    model: Annotated[str, typer.Argument(help="Hub id or local folder of the model to convert.")],
    to: Annotated[str, typer.Option("--to", "-t", help="Target encoding (see `hf-posenc encodings`).")],
    theta: Annotated[float | None, typer.Option(help="RoPE base (shortcut for -o theta=...; not both).")] = None,
    option: Annotated[
        list[str] | None,
        typer.Option(
            "--option",
            "-o",
            help="Encoding option KEY=VALUE, repeatable. VALUE is a Python literal, as `hf-posenc encodings` prints "
            "it, or JSON: -o per_layer=True (or true), -o max_positions=None (or null), "
            "-o \"scaling={'rope_type': 'yarn', 'factor': 4.0}\"; other text is a string (-o method=interpolate).",
        ),
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Output folder (default: ./<model>-<encoding>).")
    ] = None,
    max_length: Annotated[
        int | None,
        typer.Option(
            "--max-length",
            min=1,
            help="Declared maximum input length, written to the config and the tokenizer's model_max_length "
            "(default: the longest length past the window that the model's own --evaluation validates, with "
            "perplexity within 1.5x of the in-window perplexity, else 4x the trained window; learned: its table size).",
        ),
    ] = None,
    push_to_hub: Annotated[str | None, typer.Option(help="Also upload to this Hub repo id.")] = None,
    private: Annotated[bool, typer.Option("--private", help="Create the Hub repo as private.")] = False,
    base_model: Annotated[
        str | None, typer.Option(help="Hub id recorded as base_model in the card (default: MODEL when a Hub id).")
    ] = None,
    evaluation: Annotated[
        Path | None, typer.Option(help="An evaluation results folder (results.md, PNGs) to include in the card.")
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the output folder if it exists.")] = False,
) -> None:
    """Convert MODEL to another position encoding, save it with a model card, and optionally push it."""
    with failures():
        import hf_posenc

        from .hub import push_folder, remote_code_problems, save_converted
        from .hub.card import base_license
        from .modeling.posenc_base import get_encoding_class

        options = parse_options(option or [])
        if "max_length" in options:
            raise typer.BadParameter("use --max-length for max_length", param_hint="--option")
        if theta is not None:
            if to != "rope":
                raise typer.BadParameter("--theta applies only to --to rope", param_hint="--theta")
            if "theta" in options:
                raise typer.BadParameter(
                    f"--theta {theta:g} and -o theta={options['theta']} both set theta; give one", param_hint="--theta"
                )
            options["theta"] = theta
        get_encoding_class(to)  # fail fast on a bad name, before loading
        base = base_model or (None if _is_local(model) else model)
        target = out_dir or Path(f"{Path(model.rstrip('/')).name}-{to}")
        if target.exists() and any(target.iterdir()) and not overwrite:
            raise FileExistsError(f"{target} already exists and is not empty; pass --overwrite or choose --out.")
        loaded, tokenizer = load_model(model)
        with err.status(f"Converting to {to} ..."):
            hf_posenc.convert(loaded, to, max_length=max_length, **options)
        with err.status(f"Saving to {target} ..."):
            folder = save_converted(
                loaded,
                target,
                tokenizer=tokenizer,
                max_length=max_length,
                base_model=base,
                license=base_license(model),
                evaluation_dir=evaluation,
                repo_id=push_to_hub,
                overwrite=overwrite,
            )
        problems = remote_code_problems(folder)
        out.print(f"Saved {to} checkpoint to {folder}", highlight=False)
        if problems:
            err.print(f"[yellow]warning:[/yellow] it will not load without hf_posenc: {'; '.join(problems)}")
        if push_to_hub:
            with err.status(f"Uploading to {push_to_hub} ..."):
                url = push_folder(folder, push_to_hub, private=private or None)
            out.print(f"Pushed to {push_to_hub}: {url}", highlight=False)


@app.command()
def push(
    folder: Annotated[Path, typer.Argument(help="A saved checkpoint folder.")],
    repo_id: Annotated[str, typer.Argument(help="Hub repo id, e.g. user/gpt2-rope.")],
    private: Annotated[bool, typer.Option("--private", help="Create the Hub repo as private.")] = False,
) -> None:
    """Upload a saved checkpoint folder to the Hub in one commit (token from HF_TOKEN or `hf auth login`)."""
    with failures():
        from .hub import checkpoint_info, push_folder

        checkpoint_info(folder)  # refuses folders that are not converted checkpoints
        with err.status(f"Uploading to {repo_id} ..."):
            url = push_folder(folder, repo_id, private=private or None)
        out.print(f"Pushed to {repo_id}: {url}", highlight=False)


def parse_lengths(text: str) -> list[int]:
    try:
        lengths = [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated integers, got {text!r}", param_hint="--lengths") from None
    if not lengths or any(n <= 1 for n in lengths):
        raise typer.BadParameter("lengths must be integers greater than 1", param_hint="--lengths")
    return lengths


def default_lengths(model: Any) -> list[int]:
    """1x, 2x, 4x and 8x the window the model was trained with."""
    config = model.config
    window = getattr(config, "trained_context_length", None) or config.max_position_embeddings
    return [window * factor for factor in (1, 2, 4, 8)]


@app.command("eval")
def evaluate(
    model: Annotated[str, typer.Argument(help="Hub id or local folder (converted or original).")],
    lengths: Annotated[
        str | None, typer.Option(help="Comma-separated context lengths (default: 1x,2x,4x,8x the trained window).")
    ] = None,
    text: Annotated[
        list[Path] | None,
        typer.Option("--text", help="Text file of held-out documents, repeatable (default: bundled)."),
    ] = None,
    stride: Annotated[
        int | None,
        typer.Option(
            min=1, help="Tokens each sliding window scores (default: half the length); --no-sliding skips that pass."
        ),
    ] = None,
    sliding: Annotated[
        bool,
        typer.Option(
            help="Also measure sliding-window perplexity (the slower pass) besides non-overlapping chunks; causal "
            "LMs only."
        ),
    ] = True,
    passkey: Annotated[bool, typer.Option(help="Also run passkey retrieval.")] = True,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Write results.json, results.md and plots here.")
    ] = None,
    tokenizer: Annotated[
        str | None, typer.Option(help="Tokenizer Hub id or folder (default: the model's own).")
    ] = None,
    max_tokens: Annotated[
        int,
        typer.Option(
            min=1,
            help="At most this many tokens scored per length and mode (a length longer than that still scores one "
            "chunk of that length).",
        ),
    ] = 32768,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Evaluate MODEL at several context lengths: perplexity (chunks and sliding window) and passkey retrieval.

    MODEL needs a language-model head: a causal LM (e.g. GPT2LMHeadModel) gets perplexity and passkey retrieval,
    a masked LM (e.g. BertForMaskedLM) the masked-LM loss. An encoder without a head (BertModel, e.g. a
    sentence-transformers checkpoint) is refused: recipes/extend_sentence_encoder.py evaluates sentence encoders.
    """
    with failures():
        from .evaluation import evaluate_long_context

        wanted = parse_lengths(lengths) if lengths is not None else None
        texts = read_texts(text) if text else default_texts()
        loaded, own_tokenizer = load_model(model)
        if tokenizer is not None:
            from transformers import AutoTokenizer

            own_tokenizer = AutoTokenizer.from_pretrained(tokenizer)
        if own_tokenizer is None:
            raise ValueError(f"{model} has no tokenizer files; pass --tokenizer.")
        results = evaluate_long_context(
            loaded,
            own_tokenizer,
            texts,
            wanted or default_lengths(loaded),
            stride=stride,
            sliding=sliding,
            passkey=passkey,
            out_dir=out_dir,
            max_tokens=max_tokens,
            name=Path(model.rstrip("/")).name,
        )
        if as_json:
            out.print_json(data=results, default=str)
        else:
            print_results(results)
        if out_dir is not None and not as_json:
            out.print(f"Results written to {out_dir}", highlight=False)


def read_texts(paths: list[Path]) -> list[str]:
    texts = []
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"Text file {path} does not exist.")
        texts.append(path.read_text(encoding="utf-8", errors="replace"))
    return texts


def default_texts() -> list[str]:
    """The held-out books that ship with hf_posenc."""
    from .data import texts

    return texts("eval")


def print_results(results: dict[str, Any]) -> None:
    """Perplexity by length and mode, then passkey accuracy by length (when it ran)."""
    table = Table(title="Perplexity")
    for column in ("length", "mode", "status", "perplexity", "tokens"):
        table.add_column(column)
    for row in results.get("perplexity") or []:
        table.add_row(*(_cell(row.get(c)) for c in ("length", "mode", "status", "perplexity", "tokens")))
    out.print(table)
    passkey = results.get("passkey")
    if passkey and passkey.get("accuracy_by_length"):
        table = Table(title="Passkey retrieval")
        table.add_column("length")
        table.add_column("accuracy")
        for length, accuracy in zip(passkey.get("lengths", results["lengths"]), passkey["accuracy_by_length"]):
            table.add_row(_cell(length), _cell(accuracy))
        out.print(table)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


@app.command()
def encodings(
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """List the position encodings and their options."""
    with failures():
        from .encodings import available_encodings

        specs = available_encodings()
        if as_json:
            out.print_json(data=specs, default=str)
            return
        table = Table(
            title="Position encodings",
            caption="Set an option with `hf-posenc convert MODEL --to ENCODING -o NAME=VALUE` "
            "(Python or JSON literals, e.g. -o per_layer=True).",
        )
        table.add_column("encoding", no_wrap=True)
        table.add_column("option", no_wrap=True)  # names are never cut, whatever the terminal width
        table.add_column("default", overflow="fold")
        table.add_column("what it is / does", overflow="fold")
        for index, (name, spec) in enumerate(specs.items()):
            if index:
                table.add_section()
            relative = "relative" if spec["relative"] else "absolute"
            table.add_row(name, "", "", f"{spec['description']} Hooks in at: {spec['kind']}; {relative}.")
            for key, opt in spec["options"].items():
                table.add_row("", key, repr(opt["default"]), opt["doc"])
        out.print(table)


@app.command()
def info(
    folder: Annotated[Path, typer.Argument(help="A converted checkpoint folder.")],
    check_load: Annotated[
        bool,
        typer.Option("--check-load", help="Also load it in a fresh Python without hf_posenc (slower, definitive)."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Show what a converted checkpoint is and whether it loads without hf_posenc."""
    with failures():
        from .hub import checkpoint_info, verify_loads_without_hf_posenc

        details = checkpoint_info(folder)
        if check_load:
            with err.status("Loading in a fresh process without hf_posenc ..."):
                ok, detail = verify_loads_without_hf_posenc(folder)
            details["loads_without_hf_posenc"] = ok
            details["load_check"] = detail
        if as_json:
            out.print_json(data=details)
        else:
            table = Table(show_header=False, title=str(folder))
            for key, value in details.items():
                shown = json.dumps(value) if isinstance(value, dict | list) else _cell(value)
                table.add_row(key.replace("_", " "), shown)
            out.print(table)
        if not details["loads_without_hf_posenc"]:
            raise typer.Exit(EXIT_FAILED)


def run() -> None:
    """Console-script entry point: library warnings and progress bars stay quiet unless --debug is given.

    Nothing heavy is imported here or at module level: `hf-posenc --help` and usage errors never load torch.
    """
    state["quiet"] = True
    app(prog_name="hf-posenc")


def quiet_libraries() -> None:
    """Silence transformers' warnings and progress bars (loading a model shows neither)."""
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


if __name__ == "__main__":
    sys.exit(run())
