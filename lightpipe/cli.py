"""The ``lightpipe`` command: ``lightpipe run | tasks | serve | demo | chat``.

One subparser and one ``cmd_*`` function per command. Only ``run``, ``serve``, ``demo`` and
``chat`` load models, and each imports the pipeline factory (and so torch) inside itself, so
``lightpipe --help`` and ``lightpipe tasks`` stay fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from . import __version__

DTYPES = ("auto", "float32", "bfloat16", "float16")
# Errors that mean "your input or setup is wrong", not "lightpipe has a bug": no traceback.
_USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, TypeError, OSError)

RUN_EPILOG = """\
inputs:
  Each INPUT argument is one text. With no INPUT, stdin is read line by line: each non-empty
  line is one input; a line starting with {, [ or " is parsed as JSON, so a text pair is
  {"text": "a", "text_pair": "b"}. Results are printed as they come, one JSON line per input,
  in input order.

examples:
  lightpipe run sentiment-analysis "I love this" "I hate this"
  lightpipe run text-classification --model ./my-model --kwargs '{"top_k": 2}' < texts.txt
"""


class CLIError(Exception):
    """A problem with the command line itself (bad --kwargs, bad stdin JSON)."""


# --- the parser ---

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lightpipe", description="Run Hugging Face-format models from the command line.")
    parser.add_argument("--version", action="version", version=f"lightpipe {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error instead of a one-line message")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = _command(commands, "run", cmd_run,
                   "run a task's pipeline over inputs; print one JSON line per result",
                   "Run a task's pipeline over INPUT arguments or stdin lines.",
                   epilog=RUN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("task", metavar="TASK", help="a task name or alias (see `lightpipe tasks`)")
    run.add_argument("inputs", metavar="INPUT", nargs="*", help="texts to run (default: stdin lines)")
    run.add_argument("--model", "-m", help="a Hub id or local folder (default: the task's default model)")
    _add_loading_arguments(run)
    run.add_argument("--batch-size", type=_positive_int, metavar="N", help="inputs per forward pass")
    run.add_argument("--kwargs", metavar="JSON", default="{}",
                     help='call arguments as a JSON object, e.g. \'{"top_k": 2}\'')
    run.add_argument("--output-dir", metavar="DIR",
                     help="write images (PNG) and audio (WAV) results here; their paths go in the JSON")
    run.add_argument("--data-uris", action="store_true", help="inline images and audio as data: URIs")
    run.add_argument("--output", "-o", metavar="FILE",
                     help="write to FILE instead of stdout: .jsonl lines, or .npy (one vector per input)")
    run.add_argument("--pooling", metavar="MODE", help="feature-extraction: one sentence vector per "
                     "input, pooled as the checkpoint says (auto) or by mean, cls, max, lasttoken, ...")
    run.add_argument("--input", metavar="FILE", help="with --ray: a .jsonl, .parquet or .csv dataset")
    run.add_argument("--input-column", metavar="NAME", default="text",
                     help="with --input: the column holding the inputs (default: text)")
    run.add_argument("--ray", metavar="ADDRESS", nargs="?", const="local",
                     help="run on a Ray cluster (ADDRESS, or a local one when none is given); "
                          "--input FILE --output out.parquet")
    progress = run.add_mutually_exclusive_group()
    progress.add_argument("--progress", dest="progress", action="store_true", default=None,
                          help="always show a progress bar on stderr")
    progress.add_argument("--no-progress", dest="progress", action="store_false",
                          help="never show it (default: shown when stderr is a terminal)")
    run.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                     help="show the full traceback of an error")

    tasks = _command(commands, "tasks", cmd_tasks, "list every task and whether lightpipe runs it yet",
                     "List every task, its aliases and its default model.")
    tasks.add_argument("--json", action="store_true", help="print the table as JSON")
    tasks.add_argument("--families", action="store_true",
                       help="also list the model families (config.json model_type) that serve each "
                            "task, from the family registry (imports the model code: a few seconds)")

    serve = _command(commands, "serve", cmd_serve,
                     "serve models over HTTP with dynamic batching (OpenAI-compatible endpoints)",
                     "Serve TASK --model M, or the models of a --config file, over HTTP: "
                     "POST /v1/pipelines/NAME, /v1/embeddings, /v1/chat/completions, /v1/completions; "
                     "GET /v1/models, /health, /metrics. Needs the server extra.")
    serve.add_argument("task", metavar="TASK", nargs="?", help="a task name or alias")
    serve.add_argument("--model", "-m", help="a Hub id or local folder")
    serve.add_argument("--name", help="the model's name in URLs and OpenAI requests (default: "
                                      "the model's last path part)")
    serve.add_argument("--config", metavar="FILE", help="a JSON (or TOML) file listing models")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8000; 0 picks a free one)")
    serve.add_argument("--max-batch-size", type=_positive_int, metavar="N",
                       help="inputs per forward pass (default 32; 1 turns batching off)")
    serve.add_argument("--max-wait-ms", type=float, metavar="T",
                       help="how long a request waits for others to share its batch (default 5)")
    serve.add_argument("--max-queue", type=_positive_int, metavar="N",
                       help="requests waiting per model before 429 (default 1024)")
    serve.add_argument("--timeout", type=float, metavar="S", dest="timeout_s",
                       help="seconds from arrival to answer before 504 (default 60; 0: none)")
    serve.add_argument("--max-inputs", type=_positive_int, metavar="N", help="inputs per request (default 2048, as OpenAI)")
    serve.add_argument("--max-input-chars", type=_positive_int, metavar="N",
                       help="characters per text input (default 50000)")
    serve.add_argument("--max-body-bytes", type=_positive_int, metavar="N",
                       help="request body size limit (default 4 MiB)")
    serve.add_argument("--max-new-tokens", type=_positive_int, metavar="N",
                       help="most tokens a request may generate, also max_length (default 4096, and "
                            "never past the model's context)")
    serve.add_argument("--max-sequences", type=_positive_int, metavar="N",
                       help="most num_beams / num_return_sequences / n per input (default 16)")
    serve.add_argument("--max-top-k", type=_positive_int, metavar="N", help="largest top_k (default 1000)")
    serve.add_argument("--max-list-items", type=_positive_int, metavar="N",
                       help="most candidate labels, stop strings or other list items in parameters "
                            "(default 256)")
    serve.add_argument("--api-key", metavar="KEY",
                       help="require 'Authorization: Bearer KEY' on every route but /health "
                            "(default: $LIGHTPIPE_API_KEY, else none)")
    serve.add_argument("--cors-allow-origin", action="append", dest="cors_allow_origins", metavar="ORIGIN",
                       help="let browser pages from ORIGIN call the server (repeat it; * for any)")
    serve.add_argument("--allow-urls", action="store_true", default=None,
                       help="fetch http(s) URL inputs (images, video, audio); public addresses only "
                            "(default: refused)")
    serve.add_argument("--url-timeout", type=float, metavar="S", dest="url_timeout_s",
                       help="time cap of one URL fetch (default 10)")
    serve.add_argument("--max-connections", type=_positive_int, metavar="N",
                       help="open connections before new requests get 503 (default 1024)")
    serve.add_argument("--header-timeout", type=float, metavar="S", dest="header_timeout_s",
                       help="seconds a connection has to send its request headers (default 10)")
    serve.add_argument("--graceful-timeout", type=float, metavar="S", dest="graceful_timeout_s",
                       help="seconds shutdown waits for requests in flight (default 30)")
    _add_loading_arguments(serve, dtype_default=None)
    serve.add_argument("--kwargs", metavar="JSON", default="{}",
                       help="pipeline() arguments as a JSON object, e.g. '{\"truncation\": true}'")
    serve.add_argument("--threads", type=_positive_int, metavar="N",
                       help="torch threads (default: all cores but one, left to the HTTP event loop)")
    serve.add_argument("--log-level", choices=("critical", "error", "warning", "info", "debug"))
    serve.add_argument("--access-log", action="store_true", default=None, help="log every request")

    demo = _command(commands, "demo", cmd_demo, "open a web demo (gradio) of a task's pipeline",
                    "A gradio page fitted to TASK: text box, label bars, highlighted entities, "
                    "uploads. Needs the demo extra.")
    demo.add_argument("task", metavar="TASK", help="a task name or alias")
    demo.add_argument("--model", "-m", help="a Hub id or local folder (default: the task's default model)")
    demo.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    demo.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    _add_loading_arguments(demo)

    chat = _command(commands, "chat", cmd_chat,
                    "chat with an instruct model in the terminal, replies streamed",
                    "Chat with a text-generation model that has a chat template. Each stdin line "
                    "is your next message; the reply streams to stdout. Ctrl-C stops a reply; "
                    "/reset starts over, /help lists the commands, /exit (or Ctrl-D) quits. The "
                    "oldest turns are dropped, with a notice, when the conversation outgrows the "
                    "model's context.")
    chat.add_argument("--model", "-m", required=True, help="a Hub id or local folder (an instruct model)")
    chat.add_argument("--system", help="a system message that opens the conversation")
    chat.add_argument("--max-new-tokens", type=_positive_int, default=256, metavar="N",
                      help="longest reply, in tokens (default 256)")
    _add_loading_arguments(chat)
    chat.add_argument("--kwargs", metavar="JSON", default="{}",
                      help='generate() arguments as a JSON object, e.g. \'{"do_sample": false}\'')
    from .memory_estimate import add_command as add_estimate_memory

    add_estimate_memory(commands, _command)
    return parser


def _command(commands: Any, name: str, func: Any, summary: str, description: str,
             **extra: Any) -> argparse.ArgumentParser:
    """A subcommand's parser, whose parsed arguments run ``func``."""
    parser = commands.add_parser(name, help=summary, description=description, **extra)
    parser.set_defaults(func=func)
    return parser


def _add_loading_arguments(parser: argparse.ArgumentParser, dtype_default: str | None = "auto") -> None:
    """--device, --dtype and --revision: how a command loads its model."""
    parser.add_argument("--device", help="cpu, cuda, cuda:1, mps, a GPU index, or auto")
    parser.add_argument("--dtype", choices=DTYPES, default=dtype_default,
                        help="weights dtype (default: the checkpoint's own)")
    parser.add_argument("--revision", help="a branch, tag or commit of the Hub repository")
    parser.add_argument("--quantize", metavar="Q",
                        help="keep linear weights quantized: int8, int4, int4:g128, int8-dynamic "
                             "(a .gguf --model stays in its own quantization unless given; "
                             "'none' dequantizes it)")
    parser.add_argument("--int8-activations", action="store_true",
                        help="with quantized weights (--quantize int4/int8 or a .gguf --model): "
                             "int8 activations and integer dot products in the C kernel, as "
                             "llama.cpp does (faster decode, not float32-exact)")


def _quantize_arguments(args: argparse.Namespace) -> tuple[Any, dict]:
    """(model, pipeline keyword arguments) for --model and --quantize: a .gguf file path loads
    that file with its blocks kept packed, as llama.cpp does (--quantize re-quantizes it)."""
    import os

    model, extra = args.model, {}
    quantize = getattr(args, "quantize", None)
    if model and str(model).lower().endswith(".gguf") and os.path.isfile(model):
        model, extra["gguf_file"] = os.path.dirname(os.path.abspath(model)), os.path.basename(model)
        if quantize is None:
            extra["dequantize"] = False
    if quantize is not None and quantize.lower() != "none":
        from .quantization import parse_quantization

        parse_quantization(quantize)  # a bad value fails here, before any loading
        extra["quantization"] = quantize
    if getattr(args, "int8_activations", False):
        from .quantization.loading import PACKED, check_int8_activations

        check_int8_activations(PACKED if extra.get("dequantize") is False else extra.get("quantization"))
        extra["int8_activations"] = True
    return model, extra


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text!r}")
    return value


# --- commands ---

def cmd_run(args: argparse.Namespace) -> int:
    call_kwargs = _parse_kwargs(args.kwargs)
    from .pipelines import pipeline  # imports torch only once a model loads

    device, device_map = _device_arguments(args.device)
    model, extra = _quantize_arguments(args)
    if args.ray is not None or args.input is not None:
        from .ray import run_cli

        return run_cli(args, model, {"device": device, "dtype": args.dtype, "revision": args.revision,
                                     **extra}, call_kwargs)
    pipe = pipeline(args.task, model=model, device=device, device_map=device_map,
                    dtype=args.dtype, batch_size=args.batch_size, revision=args.revision, **extra)
    from .cli_output import ResultWriter, count_lines

    writer = ResultWriter(args.output_dir, args.data_uris, args.output)  # checks --output first
    if not args.inputs and sys.stdin.isatty():
        print(f"lightpipe: reading inputs from the terminal, one per line; end with Ctrl-D. (Or "
              f"pass them as arguments: lightpipe run {args.task} --model M \"some text\", or "
              "redirect a file: < inputs.txt)", file=sys.stderr)
    # A generator in -> a lazy iterator out: results print while stdin is still being read.
    inputs = iter(args.inputs) if args.inputs else read_inputs(sys.stdin)
    total = len(args.inputs) or (None if args.inputs else count_lines(sys.stdin))
    results = _pooled(pipe, inputs, args, call_kwargs) if args.pooling else pipe(inputs, **call_kwargs)
    show = sys.stderr.isatty() if args.progress is None else args.progress
    if show:
        results = _progress(results, args.task, total=total)
    for index, result in enumerate(results):
        writer.write(index, result)
    writer.close()
    return 0


def _pooled(pipe: Any, inputs: Iterator, args: argparse.Namespace, call_kwargs: dict) -> Iterator:
    """--pooling: sentence vectors (lightpipe.embeddings) in windows of 256 inputs."""
    import itertools

    from .embeddings import embed, finish, override, read_settings
    from .hub import resolve

    if pipe.task != "feature-extraction":
        raise CLIError(f"--pooling is for feature-extraction, not {pipe.task}.")
    settings = read_settings(resolve(args.model, weights=False, revision=args.revision)
                             if args.model else None, pipe.tokenizer, normalize_plain=False)
    if args.pooling != "auto":
        override(settings, pooling=args.pooling)
    while window := list(itertools.islice(inputs, 256)):
        for vector in embed(pipe, window, settings, batch_size=args.batch_size or 32):
            yield finish(vector, settings).numpy()


def cmd_tasks(args: argparse.Namespace) -> int:
    from .pipelines import SUPPORTED_TASKS

    rows = [{"name": task.name, "aliases": list(task.aliases), "ready": task.available,
             "kind": task.kind, "default_model": task.default[0],
             "default_revision": task.default[1]} for task in SUPPORTED_TASKS.values()]
    families = None
    if args.families:
        from .pipelines.task_families import task_families

        families = task_families()
        for row in rows:
            row["families"] = families[row["name"]]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = [("TASK", "ALIASES", "STATUS", "DEFAULT MODEL")] + [
        (row["name"], ", ".join(row["aliases"]) or "-", "ready" if row["ready"] else "not yet",
         row["default_model"]) for row in rows]
    widths = [max(len(line[col]) for line in table) for col in range(3)]
    for line in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)) + "  " + line[3])
        if families and families.get(line[0]):
            import textwrap

            print(textwrap.fill(", ".join(families[line[0]]), width=100, break_on_hyphens=False,
                                initial_indent="    families: ", subsequent_indent=" " * 14))
    print("\nTranslation also takes translation_XX_to_YY (e.g. translation_en_to_fr).")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .serving import build_settings, read_config, serve

    if args.task is None and args.config is None:
        raise CLIError("give TASK --model M, or --config FILE (or both), e.g. "
                       "`lightpipe serve feature-extraction --model sentence-transformers/all-MiniLM-L6-v2`")
    models = []
    if args.task is not None:
        model, extra = _quantize_arguments(args)
        entry = {"task": args.task, "model": model, "name": args.name, "device": args.device,
                 "dtype": args.dtype, "revision": args.revision,
                 "kwargs": {**_parse_kwargs(args.kwargs), **extra}}
        models.append({key: value for key, value in entry.items() if value is not None})
    defaults = {key: getattr(args, key) for key in (
        "max_batch_size", "max_wait_ms", "max_queue", "timeout_s", "max_inputs", "max_input_chars",
        "max_new_tokens", "max_sequences", "max_top_k", "max_list_items")}
    server = {key: getattr(args, key) for key in (
        "host", "port", "max_body_bytes", "log_level", "access_log", "threads", "api_key",
        "allow_urls", "url_timeout_s", "max_connections", "header_timeout_s", "graceful_timeout_s",
        "cors_allow_origins")}
    settings = build_settings(read_config(args.config) if args.config else None, models, defaults,
                              **server)
    return serve(settings)


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import launch

    device, device_map = _device_arguments(args.device)
    return launch(args.task, model=args.model, host=args.host, port=args.port, device=device,
                  device_map=device_map, dtype=args.dtype, revision=args.revision)


def cmd_chat(args: argparse.Namespace) -> int:
    generate_kwargs = _parse_kwargs(args.kwargs)
    from .pipelines import pipeline

    device, device_map = _device_arguments(args.device)
    model, extra = _quantize_arguments(args)
    pipe = pipeline("text-generation", model=model, device=device, device_map=device_map,
                    dtype=args.dtype, revision=args.revision, **extra)
    if pipe.tokenizer.chat_template is None:
        raise CLIError(f"{args.model} has no chat template, so it cannot chat: use an instruct "
                       "or chat model, or `lightpipe run text-generation` to continue plain text.")
    from .cli_chat import ChatSession

    return ChatSession(pipe, args.system, args.max_new_tokens, generate_kwargs).run(args.model)


# --- helpers ---

def read_inputs(stream: TextIO) -> Iterator[Any]:
    """Each non-empty line of ``stream`` -> one input: JSON when it starts with {, [ or ",
    raw text otherwise. Lazy, so a long stdin is never held in memory."""
    for number, line in enumerate(stream, start=1):
        text = line.rstrip("\r\n")
        if not text.strip():
            continue
        if text.lstrip()[:1] in ("{", "[", '"'):
            try:
                yield json.loads(text)
            except json.JSONDecodeError as err:
                raise CLIError(f"stdin line {number} starts like JSON but does not parse ({err}). "
                               "Raw text may not start with {, [ or \"; wrap it in a JSON string.") from None
        else:
            yield text


def _parse_kwargs(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise CLIError(f"--kwargs is not valid JSON ({err}): {text!r}. "
                       'Example: --kwargs \'{"top_k": 2}\'') from None
    if not isinstance(value, dict):
        raise CLIError(f"--kwargs must be a JSON object such as '{{\"top_k\": 2}}', not {text!r}.")
    return value


def _device_arguments(device: str | None) -> tuple[Any, Any]:
    """``--device`` -> (device, device_map) for pipeline(): "auto" picks the best device."""
    if device == "auto":
        return None, "auto"
    if device is not None and device.lstrip("-").isdigit():
        return int(device), None
    return device, None


def _progress(results: Iterable, task: str, total: int | None) -> Iterator:
    from tqdm.auto import tqdm  # a dependency of huggingface_hub

    with tqdm(results, desc=task, total=total, unit=" inputs", file=sys.stderr,
              dynamic_ncols=True) as bar:
        yield from bar


# --- entry point ---

def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status (0 ok, 2 usage or input error)."""
    parser = build_parser()
    try:
        args = _parse(parser, argv)
    except SystemExit as exit_:  # --help, --version, usage errors: argparse has printed them
        return exit_.code if isinstance(exit_.code, int) else 2
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return args.func(args)
    except BrokenPipeError:  # `lightpipe run ... | head`: the reader left, stop quietly
        _silence_stdout()
        return 1
    except KeyboardInterrupt:
        return 130
    except ModuleNotFoundError as err:
        from .errors import EXTRAS, missing_extra

        if args.debug or (err.name or "").split(".")[0] not in EXTRAS:
            raise
        print(f"lightpipe: error: {missing_extra(err.name)}", file=sys.stderr)
        return 2
    except Exception as err:
        from .errors import LightpipeError

        if args.debug or not isinstance(err, (LightpipeError, CLIError) + _USER_ERRORS):
            raise
        print(f"lightpipe: error: {err}", file=sys.stderr)
        return 2


def _parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """parse_args, but INPUT words may also follow options (`run TASK --model M a b`):
    argparse fills INPUT only from the words right after TASK and returns later ones as extras."""
    args, extras = parser.parse_known_args(argv)
    if extras and args.command == "run":
        cut = extras.index("--") if "--" in extras else len(extras)
        words, rest = extras[:cut], extras[cut + 1:]
        extras = [word for word in words if word.startswith("-") and word != "-"]
        if not extras:
            args.inputs += words + rest
    if extras:
        parser.error(f"unrecognized arguments: {' '.join(extras)}")
    return args


def _silence_stdout() -> None:
    import os

    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):
        pass
