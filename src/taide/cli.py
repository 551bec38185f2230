"""The `taide` command: argument parsing and printing only; the work is in the library."""

from __future__ import annotations

import json
import math
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from taide.engines.params import GenerationParams
from taide.errors import TaideError

app = typer.Typer(
    name="taide",
    help="Build, serve and evaluate Taiwan Traditional-Chinese chat models (Llama3-TAIDE's recipe).\n\n"
         "Models are local: an HF directory, a .gguf file, an OpenAI-compatible URL, or the embedded "
         "default 'smollm2-135m'.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
)
# Lines are never wrapped at the console's width: paths and file:line references stay whole in logs.
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
_state = {"debug": False}


class StepProgress:
    """Progress of long work wherever output goes. On a terminal: a bar per task with the time left. Otherwise (a
    file, nohup, CI, a cluster's log): one line per step at most every ``every`` seconds, and the last step, as
    torchrun jobs log; and while a task reports nothing (loading, dequantizing, evaluating) a line every ``quiet``
    seconds saying it is still running, so a log is never silent for long."""

    def __init__(self, console: Console, every: float = 10.0, quiet: float = 20.0):
        import threading
        import time

        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.console, self.every, self.quiet, self.clock = console, every, quiet, time.monotonic
        self.live = console.is_terminal
        self.bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TextColumn("{task.fields[info]}"), TimeRemainingColumn(), console=console,
                             transient=True) if self.live else None
        self.tasks: dict[str, dict] = {}  # name → {"bar", "started", "logged" (any line), "stepped", "step"}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        if not self.live:
            threading.Thread(target=self._heartbeat, name="taide-progress", daemon=True).start()

    def begin(self, name: str) -> None:
        """A task whose steps are not known yet (a build stage, a training run while it loads)."""
        with self._lock:
            now = self.clock()
            self.tasks.setdefault(name, {"bar": None, "started": now, "logged": now, "stepped": now, "step": None})

    def step(self, name: str, step: int, total: int, info: str) -> None:
        self.begin(name)
        with self._lock:
            task, now = self.tasks[name], self.clock()
            task["step"] = (step, total)
            if self.live:
                if task["bar"] is None:
                    self.bars.start()
                    task["bar"] = self.bars.add_task(name, total=total, info="")
                self.bars.update(task["bar"], completed=step, total=total, info=info)
                return
            if step == total or step == 1 or now - task["stepped"] >= self.every:
                elapsed = now - task["started"]
                left = elapsed / step * (total - step) if step else 0.0
                self.console.print(f"{name}: step {step}/{total} · {info} · {_clock(elapsed)} elapsed, "
                                   f"{_clock(left)} left")
                task["logged"] = task["stepped"] = now

    def note(self, name: str, text: str) -> None:
        """What a task is doing now: shown in a log (and counted as progress), not drawn on a terminal."""
        self.begin(name)
        with self._lock:
            if not self.live:
                self.console.print(f"{name}: {text}")
                self.tasks[name]["logged"] = self.clock()

    def end(self, name: str) -> None:
        with self._lock:
            task = self.tasks.pop(name, None)
            if task and task["bar"] is not None:
                self.bars.remove_task(task["bar"])
                if not self.bars.tasks:
                    self.bars.stop()

    def close(self) -> None:
        self._stop.set()
        if self.bars is not None:
            self.bars.stop()

    def _heartbeat(self) -> None:
        while not self._stop.wait(1.0):
            with self._lock:
                now = self.clock()
                for name, task in self.tasks.items():
                    if now - task["logged"] >= self.quiet:
                        where = f" (step {task['step'][0]}/{task['step'][1]})" if task["step"] else ""
                        self.console.print(f"{name}: still running{where}, {_clock(now - task['started'])} elapsed")
                        task["logged"] = now


def _clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _version(value: bool):
    if value:
        from taide import __version__

        out.print(f"taide {__version__}")
        raise typer.Exit()


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
          version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Print the version and exit.")] = False):
    _state["debug"] = debug


@contextmanager
def _errors():
    """taide's own errors are printed as one clear line; --debug shows the traceback."""
    try:
        yield
    except TaideError as e:
        if _state["debug"]:
            raise
        err.print(f"[bold red]error:[/] {e}", soft_wrap=True)
        raise typer.Exit(1)


# --- shared options --------------------------------------------------------------------------------
Model = Annotated[str, typer.Argument(help="HF directory, .gguf file, http(s) endpoint URL, or 'smollm2-135m'.")]
NewestModel = Annotated[Optional[str], typer.Argument(help="HF directory, .gguf file, http(s) endpoint URL, or an "
                                                      "embedded name (default: the model of the newest `taide build` "
                                                      "on this machine, else the English 'smollm2-135m').")]


def _model_or_newest(model: str | None) -> str:
    """The model named, or the one rule of every command (models.default_model), said on screen."""
    from taide.models import default_model
    from taide.models.reference import DEFAULT_EMBEDDED

    if model is None:
        model = default_model()
        note = " (English; `taide build` makes a model that answers in Traditional Chinese)" * (model == DEFAULT_EMBEDDED)
        err.print(f"[dim]model: {model}{note}[/]")
    return model
EngineOpt = Annotated[str, typer.Option("--engine", "-e", help="auto, llamacpp, transformers or openai.")]
MaxTokens = Annotated[int, typer.Option("--max-tokens", help="Most new tokens per answer.")]
DEFAULTS = GenerationParams()  # the library's sampling defaults are the commands' defaults
Temperature = Annotated[float, typer.Option("--temperature", "-t", help="0 = greedy.")]
TopP = Annotated[float, typer.Option("--top-p")]
TopK = Annotated[int, typer.Option("--top-k", help="0 = off.")]
RepPenalty = Annotated[float, typer.Option("--repetition-penalty", help="1.0 = off.")]
Seed = Annotated[Optional[int], typer.Option("--seed", help="Seed for sampling (repeatable answers).")]
Stop = Annotated[Optional[list[str]], typer.Option("--stop", help="A string that ends the answer; repeatable.")]
System = Annotated[str, typer.Option("--system", "-s",
                   help="System prompt: 'auto' (the TAIDE prompt for TAIDE-format models, the model's own default "
                        "otherwise), 'none', a preset name ('taide'), or the text itself.")]
Traditional = Annotated[bool, typer.Option("--traditional",
                        help="Convert Simplified characters in the output to Taiwan Traditional (OpenCC s2twp) "
                             "and report how many changed.")]
ChatFormatOpt = Annotated[Optional[str], typer.Option("--chat-format", help="Override: llama3, gemma or template.")]
NCtx = Annotated[Optional[int], typer.Option("--n-ctx", help="Context window for llamacpp (default: the model's, up to 8192).")]
ApiKey = Annotated[Optional[str], typer.Option("--api-key", envvar="OPENAI_API_KEY", help="Key for an endpoint.")]


def _describe(engine):
    """Say which model, engine, context and chat format were loaded (chat is interactive: the user should know)."""
    info = engine.describe()
    err.print(f"[dim]{info['model']} on {info['engine']} · context {info['context_length']} · "
              f"chat format {info['chat_format'] or 'server-side'}[/]")
    return engine


def _speed(completion) -> str:
    tps = completion.tokens_per_second
    rate = f"{tps:.1f} tok/s" if not math.isnan(tps) else "– tok/s"
    return (f"{completion.completion_tokens} tokens · {rate} · first token {completion.time_to_first_token * 1000:.0f} ms"
            f" · {completion.finish_reason}")


# --- commands --------------------------------------------------------------------------------------
@app.command()
def chat(model: NewestModel = None, engine: EngineOpt = "auto", system: System = "auto",
         max_tokens: MaxTokens = 512, temperature: Temperature = DEFAULTS.temperature, top_p: TopP = DEFAULTS.top_p,
         top_k: TopK = DEFAULTS.top_k, repetition_penalty: RepPenalty = DEFAULTS.repetition_penalty, seed: Seed = None,
         stop: Stop = None,
         traditional: Traditional = False, chat_format: ChatFormatOpt = None, n_ctx: NCtx = None,
         api_key: ApiKey = None,
         save: Annotated[Optional[Path], typer.Option("--save", help="Append the transcript to this JSONL file on exit.")] = None):
    """Chat with a model in the terminal, streaming, multi-turn.

    In the chat: **/reset** forgets the conversation, **/system TEXT** sets the system prompt (**/system -**
    clears it), **/save FILE** appends the transcript as JSONL, **/exit** or Ctrl-D quits.

    Example: `taide chat` (your newest `taide build`), `taide chat smollm2-135m --temperature 0.3`
    """
    from taide.chat.presets import resolve_system_prompt
    from taide.chat.session import ChatSession
    from taide.chat.traditional import TraditionalGuard
    from taide.generate import SamplingOptions
    from taide.tasks import stream_guarded

    with _errors():
        options = SamplingOptions(engine=engine, max_tokens=max_tokens, temperature=temperature, top_p=top_p,
                                  top_k=top_k, repetition_penalty=repetition_penalty, seed=seed, stop=stop or [],
                                  chat_format=chat_format, n_ctx=n_ctx, api_key=api_key)
        params = options.params()
        eng = _describe(options.load(_model_or_newest(model), err.status))
        session = ChatSession(resolve_system_prompt(system, eng.default_system_prompt))
        err.print("[dim]/reset · /system TEXT · /save FILE · /exit[/]")
        while True:
            try:
                line = input("\n> ")
            except (EOFError, KeyboardInterrupt):
                break
            text = line.strip()
            if not text:
                continue
            if text in ("/exit", "/quit"):
                break
            if text == "/reset":
                session.reset()
                err.print("[dim]conversation cleared[/]")
                continue
            if text.startswith("/system"):
                value = text[len("/system"):].strip()
                if value:
                    session.system = resolve_system_prompt("none" if value == "-" else value, eng.default_system_prompt)
                err.print(f"[dim]system prompt: {session.system or '(none)'}[/]")
                continue
            if text.startswith("/save"):
                target = text[len("/save"):].strip()
                if not target:
                    err.print("[red]usage: /save FILE[/]")
                    continue
                err.print(f"[dim]saved to {session.save(target)}[/]")
                continue
            guard = TraditionalGuard() if traditional else None
            messages = session.add_user(text)
            try:
                for chunk in stream_guarded(eng, messages, params, guard):
                    sys.stdout.write(chunk.text)
                    sys.stdout.flush()
                    if chunk.completion:
                        session.add_assistant(chunk.completion.text)
                        note = f" · {guard.changed} characters made Traditional" if guard else ""
                        err.print(f"\n[dim]{_speed(chunk.completion)}{note}[/]")
            except KeyboardInterrupt:
                session.drop_last_user()
                err.print("\n[dim]interrupted[/]")
            except TaideError as e:
                session.drop_last_user()
                err.print(f"\n[bold red]error:[/] {e}")
        if save:
            err.print(f"[dim]saved to {session.save(save)}[/]")
        eng.close()


@app.command()
def generate(model: Model, input: Annotated[Path, typer.Argument(help="JSONL: {id, messages} or {id, prompt} per line.")],
             output: Annotated[Path, typer.Argument(help="JSONL to append answers to; ids already there are skipped.")],
             engine: EngineOpt = "auto", system: System = "auto", max_tokens: MaxTokens = 512,
             temperature: Temperature = DEFAULTS.temperature, top_p: TopP = DEFAULTS.top_p, top_k: TopK = DEFAULTS.top_k,
             repetition_penalty: RepPenalty = DEFAULTS.repetition_penalty,
             seed: Seed = None, stop: Stop = None, traditional: Traditional = False, chat_format: ChatFormatOpt = None,
             n_ctx: NCtx = None, api_key: ApiKey = None,
             batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Conversations decoded together.")] = 8):
    """Answer every conversation of a JSONL file, batched and resumable.

    A rerun after an interruption skips the ids already in OUTPUT. Each output line is the input
    record plus `answer`, `finish_reason` and `usage`.

    Example: `taide generate smollm2-135m questions.jsonl answers.jsonl --temperature 0`
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from taide.generate import GenerateConfig, run_generate

    with _errors():
        config = GenerateConfig(model=model, input=input, output=output, batch_size=batch_size, engine=engine,
                                system=system, max_tokens=max_tokens, temperature=temperature, top_p=top_p, top_k=top_k,
                                repetition_penalty=repetition_penalty, seed=seed, stop=stop or [],
                                traditional=traditional, chat_format=chat_format, n_ctx=n_ctx, api_key=api_key)
        with Progress(TextColumn("generating"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=err) as progress:
            bar = progress.add_task("generate", total=None)
            report = run_generate(config, status=err.status,
                                  on_progress=lambda done, total: progress.update(bar, completed=done, total=total))
        changed = f", {report.traditional_changes} characters made Traditional" if traditional else ""
        out.print(f"{report.generated} answered, {report.already_done} already done, {report.total} in all "
                  f"({report.completion_tokens} tokens in {report.elapsed:.1f} s{changed}) → {report.output}")


@app.command()
def task(kind: Annotated[str, typer.Argument(help="article, letter, summary, zh2en or en2zh.")],
         input: Annotated[str, typer.Argument(help="A file with the input text, or - for standard input.")] = "-",
         model: Annotated[Optional[str], typer.Option("--model", "-m", help="Model reference (see `taide chat --help`; "
                          "default: the newest `taide build`, else the English 'smollm2-135m').")] = None,
         engine: EngineOpt = "auto", system: System = "auto", max_tokens: MaxTokens = 512,
         temperature: Temperature = 0.3, top_p: TopP = 1.0, top_k: TopK = 0, repetition_penalty: RepPenalty = 1.05,
         seed: Seed = None, traditional: Traditional = False, chat_format: ChatFormatOpt = None,
         n_ctx: NCtx = None, api_key: ApiKey = None):
    """Run one of the card's office tasks: write an article or a letter, summarize, or translate zh↔en.

    The instruction prompt (Traditional Chinese) wraps your text; the answer streams to standard output.

    Example: `echo "本法所稱主管機關為內政部。" | taide task zh2en --model smollm2-135m`
    """
    from taide.tasks import TaskConfig, run_task

    def show(text):
        sys.stdout.write(text)
        sys.stdout.flush()

    with _errors():
        config = TaskConfig(kind=kind, input=input, model=_model_or_newest(model), engine=engine, system=system, max_tokens=max_tokens,
                            temperature=temperature, top_p=top_p, top_k=top_k, repetition_penalty=repetition_penalty,
                            seed=seed, traditional=traditional, chat_format=chat_format, n_ctx=n_ctx, api_key=api_key)
        result = run_task(config, on_text=show, status=err.status)
        note = f" · {result.traditional_changes} characters made Traditional" if traditional else ""
        err.print(f"\n[dim]{_speed(result.completion)}{note}[/]")


@app.command()
def demo(model: NewestModel = None,
         engine: EngineOpt = "auto", max_tokens: MaxTokens = 96):
    """Run each office task once on a sample input and show prompt, answer and speed.

    Example: `taide demo` (the model of your newest `taide build`; before any build, the embedded English
    SmolLM2-135M-Instruct on llama.cpp, about a minute on 2 cores)
    """
    from dataclasses import replace

    from taide.chat.presets import TASKS
    from taide.tasks import DEMO_PARAMS, demo as run_demo

    with _errors():
        model = _model_or_newest(model)
        params = replace(DEMO_PARAMS, max_tokens=max_tokens)
        current = {"task": None}

        def show(task_name, chunk):
            if current["task"] != task_name:
                current["task"] = task_name
                t = TASKS[task_name]
                out.rule(f"{t.name} · {t.title}")
                out.print(f"[bold]prompt[/]\n{t.prompt(t.example)}\n[bold]answer[/]")
            sys.stdout.write(chunk.text)
            sys.stdout.flush()
            if chunk.completion:
                out.print(f"\n[dim]{_speed(chunk.completion)}[/]")

        results = run_demo(model, engine, params, on_chunk=show)
        table = Table(title="taide demo")
        for col in ("task", "tokens", "tok/s", "first token (ms)", "finish"):
            table.add_column(col)
        for r in results:
            c = r.completion
            table.add_row(r.task, str(c.completion_tokens), f"{c.tokens_per_second:.1f}",
                          f"{c.time_to_first_token * 1000:.0f}", c.finish_reason)
        out.print(table)
        if model == "smollm2-135m":
            out.print("[dim]SmolLM2-135M is a small English model, so its Chinese answers are weak; it is here to show "
                      "the pipeline. Run `taide build` for a model that answers in Traditional Chinese (taide demo "
                      "then uses it), or pass a Llama3-TAIDE GGUF or directory: taide demo MODEL[/]")


@app.command()
def info(model: NewestModel = None,
         json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False):
    """Show what a model reference resolves to, without loading weights.

    Example: `taide info ./my-model-dir`
    """
    from taide.models import resolve_model

    with _errors():
        fields = resolve_model(_model_or_newest(model)).summary()
        if json_out:
            out.print_json(json.dumps(fields, ensure_ascii=False))
        else:
            for k, v in fields.items():
                out.print(f"[bold]{k:>17}[/]  {v}")


@app.command()
def serve(model: NewestModel = None, engine: EngineOpt = "auto",
          host: Annotated[str, typer.Option("--host", help="Address to listen on (127.0.0.1: this machine only).")] = "127.0.0.1",
          port: Annotated[int, typer.Option("--port", "-p")] = 8000,
          api_key: Annotated[Optional[str], typer.Option("--api-key", envvar="TAIDE_API_KEY",
                             help="Require 'Authorization: Bearer KEY' on every route but /health and the page.")] = None,
          upstream: Annotated[Optional[str], typer.Option("--upstream", help="Gateway mode: serve this OpenAI-compatible "
                              "endpoint (e.g. vLLM) instead of a local model, adding auth, limits, metrics and the page.")] = None,
          upstream_api_key: Annotated[Optional[str], typer.Option("--upstream-api-key", envvar="OPENAI_API_KEY",
                                      help="Key for the upstream endpoint.")] = None,
          served_model_name: Annotated[Optional[str], typer.Option("--served-model-name", help="Model id clients use.")] = None,
          system_prompt: Annotated[Optional[str], typer.Option("--system-prompt",
                                   help="Applied when a request has no system message: 'auto' (the TAIDE prompt for "
                                        "TAIDE-format models), 'none', a preset name, or the text itself.")] = "auto",
          concurrency: Annotated[Optional[int], typer.Option("--concurrency", min=1,
                                 help="Requests decoded together (default: the engine's batch, 8).")] = None,
          max_waiting: Annotated[int, typer.Option("--max-waiting", min=0, help="Requests that may wait; more get 429.")] = 64,
          stream_interval: Annotated[float, typer.Option("--stream-interval", min=0, max=1,
                                     help="Least seconds between two writes of a streamed answer: tokens decoded "
                                          "meanwhile leave together, each its own event (0: every token at once; "
                                          "neither the first nor the last waits). Fewer writes leave more CPU to "
                                          "decoding.")] = 0.05,
          default_max_tokens: Annotated[int, typer.Option("--default-max-tokens", min=1,
                                        help="Tokens an answer may have when the request gives no max_tokens.")] = 512,
          isolate: Annotated[bool, typer.Option("--isolate/--no-isolate", help="Run the model in a process of its "
                             "own that the server restarts when it crashes or hangs (the default); --no-isolate: in "
                             "the server's process.")] = True,
          engine_timeout: Annotated[float, typer.Option("--engine-timeout", min=1, help="Seconds without a decode "
                                    "step, with requests waiting, after which the engine is taken as hung and "
                                    "restarted.")] = 120.0,
          chat_format: ChatFormatOpt = None, n_ctx: NCtx = None):
    """Serve a model over the OpenAI API, with metrics and a web chat at /.

    Routes: POST /v1/chat/completions and /v1/completions (streamed or not), GET /v1/models, /health,
    /metrics (Prometheus), /openapi.json, and the web page at /. The model runs in a supervised process of its
    own: a crash or a hang costs only the requests it was serving, and the server restarts it.

    Example: `taide serve smollm2-135m --port 8000`, then
    `curl localhost:8000/v1/chat/completions -d '{"messages":[{"role":"user","content":"你好"}]}'`
    """
    from taide.serve import ServeConfig, run_serve

    with _errors():
        config = ServeConfig(model=None if upstream else _model_or_newest(model), engine=engine, host=host, port=port,
                             upstream=upstream,
                             upstream_api_key=upstream_api_key, chat_format=chat_format, n_ctx=n_ctx,
                             served_model_name=served_model_name, api_key=api_key, concurrency=concurrency,
                             max_waiting=max_waiting, system_prompt=system_prompt, stream_interval=stream_interval,
                             default_max_tokens=default_max_tokens, isolate=isolate, engine_timeout=engine_timeout)
        err.print(f"[dim]serving {upstream or config.model} on http://{host}:{port} (web chat at /, API at /v1)[/]")
        run_serve(config)


data_app = typer.Typer(help="Corpus preprocessing: the card's cleaning steps for Taiwan text.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("clean")
def data_clean(inputs: Annotated[list[Path], typer.Argument(help="Files or directories: JSONL/JSON, Parquet, CSV/TSV, "
                                                      ".txt, .html (optionally .gz or .zst). Any charset.")],
               out_dir: Annotated[Path, typer.Option("--out", "-o", help="Directory for part-*, stats.json, stats.md.")],
               config: Annotated[Optional[Path], typer.Option("--config", help="YAML with 'pipeline:', a list of "
                                 "stages (name, or {stage, enabled, options...}) in order.")] = None,
               text_field: Annotated[Optional[str], typer.Option("--text-field", help="The field (or column) holding "
                                     "the text (default: the --config file's text_field, else text).")] = None,
               keep_rejected: Annotated[Optional[Path], typer.Option("--keep-rejected",
                                        help="Also write removed documents, with stage and reason, here.")] = None,
               workers: Annotated[Optional[int], typer.Option("--workers", min=1,
                                  help="Worker processes (default: one per core; with ray, one per cluster CPU).")] = None,
               executor: Annotated[str, typer.Option("--executor", help="local (processes here) or ray "
                                   "(a local Ray, or the cluster at --ray-address / RAY_ADDRESS).")] = "local",
               ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="The Ray cluster for --executor "
                                      "ray: HOST:PORT, ray://HOST:PORT, auto (the one `ray start` last recorded here) "
                                      "or local. Default: RAY_ADDRESS, else a Ray of this machine's own, started for "
                                      "the run and shut down after it (never the cluster Ray's state on this machine "
                                      "points at). A cluster that does not answer fails within seconds.")] = None,
               output_format: Annotated[str, typer.Option("--format", help="jsonl or parquet shards.")] = "jsonl",
               shard_docs: Annotated[int, typer.Option("--shard-docs", min=1, help="Documents per output shard.")] = 100_000,
               keep_work: Annotated[bool, typer.Option("--keep-work", help="Keep the batch files (OUT/.work/) after "
                                    "success; by default they are deleted.")] = False,
               decontaminate: Annotated[Optional[list[Path]], typer.Option("--decontaminate", help="Evaluation data "
                                        "the output must not hold: exam files or folders (any format `taide eval mc` "
                                        "reads), taide-bench, any JSONL of prompts; repeat the flag for each (a "
                                        "folder of several benchmarks names each after its subfolder).")] = None,
               decontaminate_action: Annotated[Optional[str], typer.Option("--decontaminate-action", help="What to do "
                                               "with a document that holds an evaluation item: drop (default), cut "
                                               "the item out, or tag the record and keep it.")] = None):
    """Clean a corpus the card's way: HTML to text, mojibake repair, character normalization, Simplified
    to Taiwan Traditional, layout line breaks, PII, gambling/porn spam, quality, exact and near dedup; with
    --decontaminate, also no exam question or bench prompt of the given evaluation data (copies re-punctuated,
    in Simplified or with the options reordered included; decontamination.md says what was found where).
    Every input record is accounted for in stats.md. Killed? Run the same command again: it resumes.
    Done? Running it again returns the report at once.

    Example: `taide data clean laws.jsonl.gz pages/ -o cleaned/ --keep-rejected cleaned/rejected --decontaminate data/tmmluplus`
    """
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from taide.data import CleanConfig, run_clean

    with _errors():
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err) as progress:
            bar = progress.add_task("reading", total=None)
            config = CleanConfig(inputs=inputs, out_dir=out_dir, config=config, text_field=text_field,
                                 keep_rejected=keep_rejected, workers=workers, executor=executor,
                                 ray_address=ray_address, format=output_format, shard_docs=shard_docs,
                                 keep_work=keep_work, decontaminate=decontaminate,
                                 decontaminate_action=decontaminate_action)
            result = run_clean(config, on_progress=lambda n: progress.update(bar, description=f"{n} documents cleaned"))
        out.print(f"{result.read} read = {result.kept} kept + {result.removed_total} removed + {result.unreadable} "
                  f"unreadable → {result.output} (accounting per stage and source in stats.md)")
        if result.decontamination:
            _print_decontamination(result.decontamination, result.output)


def _print_decontamination(found: dict, where: Path) -> None:
    """One line per benchmark: items checked, too short to check, found; then what happened to the texts."""
    from taide.decontam.report import counted

    for name, b in found["benchmarks"].items():
        short = f", {b['too_short']} too short to check" if b["too_short"] else ""
        out.print(f"decontamination: {name}: {b['checked']} of {b['items']} items checked{short}; "
                  f"{b['found']} found in {counted(b['documents'], found['what'])}")
    out.print(f"decontamination: {counted(found['documents'], found['what'])} held evaluation items: {found['removed']} removed, "
              f"{found['cut']} cut, {found['tagged']} tagged (which, where: {where / 'decontamination.md'})")
    if found.get("unreadable_rows"):
        err.print(f"[yellow]decontamination: {found['unreadable_rows']} evaluation rows could not be read "
                  f"(listed in decontamination.md)[/]")


train_app = typer.Typer(help="Continued pretraining and instruction tuning with the card's recipe.",
                        no_args_is_help=True)
app.add_typer(train_app, name="train")

TrainModel = Annotated[Optional[str], typer.Option("--model", "-m", help="Base model: HF directory, .gguf, or 'smollm2-135m'.")]
TrainData = Annotated[Optional[list[str]], typer.Option("--data", "-d", help="Input files or directories; repeatable. "
                      "CP sources to mix are named: --data legal=cleaned/laws --data news=cleaned/news.")]
TrainOut = Annotated[Optional[str], typer.Option("--out", "-o", help="Run directory: model/, checkpoints/, metrics, loss.png.")]
Recipe = Annotated[Optional[Path], typer.Option("--recipe", help="YAML recipe; its keys are the long flag names "
                   "with underscores (flags given here override it).")]


def _train(mode, model, data, out_dir, recipe, mix, seq_len, global_batch_tokens, micro_batch_size, epochs, max_steps,
           lr, schedule, warmup_steps, eval_every, checkpoint_every, lora_r, activation_checkpointing, seed, resume,
           on_bad_record=None, chat_date=None, decontaminate=None, decontaminate_action=None):
    from taide.train import load_recipe, run_train

    with _errors():
        config = load_recipe(recipe, data, mix, lora_r, mode=mode, model=model, out=out_dir, seq_len=seq_len,
                             global_batch_tokens=global_batch_tokens, micro_batch_size=micro_batch_size,
                             epochs=epochs, max_steps=max_steps, lr=lr, schedule=schedule, warmup_steps=warmup_steps,
                             eval_every=eval_every, checkpoint_every=checkpoint_every,
                             activation_checkpointing=activation_checkpointing or None, seed=seed,
                             on_bad_record=on_bad_record, chat_date=chat_date,
                             decontaminate=[str(p) for p in decontaminate] if decontaminate else None,
                             decontaminate_action=decontaminate_action)
        progress = StepProgress(err)
        name = f"train {mode}"
        progress.begin(name)

        def on_step(step, total, values):
            info = f"loss {values['loss']:.3f} · lr {values['lr']:.2e} · {values['tokens_per_second']:.0f} tokens/s"
            if "mfu" in values:
                info += f" · MFU {values['mfu']:.1%}"
            if "eval_loss" in values:
                info += f" · held-out {values['eval_loss']:.3f}"
            progress.step(name, step, total, info)

        try:
            result = run_train(config, resume=resume, on_step=on_step)
        finally:
            progress.close()
        before = f"{math.exp(result.heldout_loss_before):.2f} → " if result.heldout_loss_before is not None else ""
        ppl = f"; held-out perplexity {before}{result.heldout_perplexity:.2f}" if result.heldout_loss is not None else ""
        out.print(f"{result.steps} steps, {result.tokens:,} tokens{ppl}\nmodel: {result.out}\n"
                  f"loss curve: {Path(config.out) / 'loss.png'}\nchat with it: taide chat {result.out}")


def _train_command(mode: str, example: str, defaults: str):
    def command(model: TrainModel = None, data: TrainData = None, out_dir: TrainOut = None, recipe: Recipe = None,
                mix: Annotated[Optional[list[str]], typer.Option("--mix", help="CP source weight, e.g. legal=3; repeatable.")] = None,
                seq_len: Annotated[Optional[int], typer.Option("--seq-len", help="Tokens per sequence (default: "
                                   "chosen from the data, at most 2048 and the model's context).")] = None,
                global_batch_tokens: Annotated[Optional[int], typer.Option("--global-batch-tokens",
                                               help="Tokens per optimizer step, all processes together (default: "
                                               "chosen so that an epoch has about 10 steps).")] = None,
                micro_batch_size: Annotated[Optional[int], typer.Option("--micro-batch-size",
                                            help="Sequences per forward pass per process.")] = None,
                epochs: Annotated[Optional[float], typer.Option("--epochs")] = None,
                max_steps: Annotated[Optional[int], typer.Option("--max-steps", help="Stop after this many steps.")] = None,
                lr: Annotated[Optional[float], typer.Option("--lr", help="Peak learning rate (AdamW).")] = None,
                schedule: Annotated[Optional[str], typer.Option("--schedule", help="cosine or wsd.")] = None,
                warmup_steps: Annotated[Optional[int], typer.Option("--warmup-steps")] = None,
                eval_every: Annotated[Optional[int], typer.Option("--eval-every", help="Held-out loss every N steps.")] = None,
                checkpoint_every: Annotated[Optional[int], typer.Option("--checkpoint-every")] = None,
                lora_r: Annotated[Optional[int], typer.Option("--lora-r", help="Train LoRA adapters of this rank "
                                  "(merged into the saved model).")] = None,
                activation_checkpointing: Annotated[bool, typer.Option("--activation-checkpointing")] = False,
                seed: Annotated[Optional[int], typer.Option("--seed")] = None,
                resume: Annotated[bool, typer.Option("--resume", help="Continue from the newest checkpoint in --out.")] = False,
                resume_if_any: Annotated[bool, typer.Option("--resume-if-any", help="Continue if there is a "
                                         "checkpoint, else start (for requeued cluster jobs).")] = False,
                on_bad_record: Annotated[Optional[str], typer.Option("--on-bad-record", help="SFT records that "
                                         "cannot be used (each named on screen and in OUT/bad_records.txt): auto "
                                         "(leave out up to 1%, refuse more; the default), skip, or error.")] = None,
                chat_date: Annotated[Optional[str], typer.Option("--chat-date", help="YYYY-MM-DD that a dated chat "
                                     "template (Llama 3.1+: \"Today Date\") renders; default: today.")] = None,
                decontaminate: Annotated[Optional[list[Path]], typer.Option("--decontaminate", help="SFT: evaluation "
                                         "data no conversation may hold (exam files or folders, taide-bench, JSONL "
                                         "of prompts); repeatable. Report: OUT/decontamination.md.")] = None,
                decontaminate_action: Annotated[Optional[str], typer.Option("--decontaminate-action",
                                                help="SFT: drop such conversations (default) or tag them (reported, "
                                                "still trained on).")] = None):
        _train(mode, model, data, out_dir, recipe, mix, seq_len, global_batch_tokens, micro_batch_size, epochs,
               max_steps, lr, schedule, warmup_steps, eval_every, checkpoint_every, lora_r, activation_checkpointing,
               seed, "if_any" if resume_if_any else resume, on_bad_record, chat_date, decontaminate,
               decontaminate_action)

    command.__doc__ = (f"{defaults}\n\nRuns as one process, or under torchrun on many GPUs/nodes (FSDP2). Writes an "
                       f"HF directory (OUT/model), checkpoints, metrics.jsonl, TensorBoard logs and loss.png.\n\n"
                       f"Example: `{example}`")
    return command


train_app.command("cp")(_train_command(
    "cp", "taide train cp -m smollm2-135m -d cleaned/ -o runs/cp --seq-len 512 --global-batch-tokens 8192",
    "Continued pretraining on cleaned corpus shards (the card: AdamW, lr 1e-4, 1M-token batches, 1 epoch, 8K context)."))
train_app.command("sft")(_train_command(
    "sft", "taide train sft -m runs/cp/model -d conversations.jsonl -o runs/sft",
    "Instruction tuning on conversations: messages, ShareGPT or Alpaca records in JSONL, JSON, Parquet, Arrow, "
    "CSV or datasets folders (the layout is detected and reported); only what the model writes is trained, in the "
    "model's own chat template (the card: AdamW, lr 5e-5, 256K-token batches, 3 epochs)."))


eval_app = typer.Typer(help="Evaluate like the card: the office-task bench graded by an LLM judge, multiple-choice "
                            "exams (TMMLU), and reports across runs.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")

EvalOut = Annotated[Path, typer.Option("--out", "-o", help="Output directory (created; a rerun resumes).")]


def _print_scores(report: dict) -> None:
    from taide.eval.report import CARD_TASKS, TASK_LABELS, score_rows

    table = Table(title="taide-bench: mean judge score (1–10)")
    for col in ("model", *(TASK_LABELS[t] for t in CARD_TASKS), "平均 average"):
        if col == "model":
            table.add_column(col, overflow="fold", min_width=14)
        else:
            table.add_column(col.replace(" ", "\n"), justify="right", no_wrap=True)
    for row in score_rows(report):
        table.add_row(*row)
    out.print(table)
    for r in report["runs"]:
        metrics = []
        for t, m in r["reference_metrics"].items():
            if m.get("chrf") is not None:
                metrics.append(f"{t} chrF {m['chrf']:.1f} BLEU {m['bleu']:.1f}")
            elif m.get("rouge_l") is not None:
                metrics.append(f"{t} ROUGE-L {m['rouge_l']:.3f}")
        wrong = [f"{t} {s['wrong_language_share']:.0%}" for t, s in r["fidelity"].items() if s.get("n")]
        simp = [f"{t} {s['simplified_share_overall']:.1%}" for t, s in r["fidelity"].items() if s.get("n")]
        out.print(f"[dim]{r['name']}: {'; '.join(metrics) or 'no reference metrics'}\n"
                  f"  wrong language: {', '.join(wrong)}\n  Simplified share: {', '.join(simp)}[/]")
    for w in report["warnings"]:
        out.print(f"[bold yellow]warning:[/] {w}", soft_wrap=True)


def _show_report(report: dict, files: dict) -> None:
    _print_scores(report)
    if files:
        out.print(f"report: {files['markdown']} · {files['json']} · {files['png']}")


@eval_app.command("bench")
def eval_bench(
        out_dir: EvalOut,
        model: Annotated[Optional[str], typer.Option("--model", "-m", help="Local model to evaluate: HF directory, "
                         ".gguf, or 'smollm2-135m'.")] = None,
        endpoint: Annotated[Optional[str], typer.Option("--endpoint", help="Or an OpenAI-compatible URL serving "
                            "the model to evaluate (vLLM, `taide serve`, ...).")] = None,
        served_model: Annotated[Optional[str], typer.Option("--served-model", help="Model name at --endpoint "
                                "(default: the first it lists).")] = None,
        api_key: ApiKey = None,
        engine: EngineOpt = "auto",
        data: Annotated[Optional[Path], typer.Option("--data", help="Bench directory: {essay,letter,summary,zh2en,"
                        "en2zh}.jsonl with {qid, prompt, reference} rows. Default: the shipped 20-item sample.")] = None,
        judge_endpoint: Annotated[Optional[str], typer.Option("--judge-endpoint", help="OpenAI-compatible URL of "
                                  "the judge.")] = None,
        judge_model: Annotated[Optional[str], typer.Option("--judge-model", help="The judge's model name at "
                               "--judge-endpoint; without an endpoint, a local judge model (HF dir, .gguf, "
                               "'smollm2-135m').")] = None,
        judge_api_key: Annotated[Optional[str], typer.Option("--judge-api-key", envvar="TAIDE_JUDGE_API_KEY",
                                 help="Key for the judge endpoint.")] = None,
        judge_concurrency: Annotated[Optional[int], typer.Option("--judge-concurrency", min=1,
                                     help="Judge requests in flight (default: --concurrency, else 8).")] = None,
        judge_max_tokens: Annotated[int, typer.Option("--judge-max-tokens", min=1,
                                    help="Most tokens per judge reply.")] = 512,
        system: System = "auto",
        tasks: Annotated[Optional[list[str]], typer.Option("--tasks", help="Tasks to run, comma-separated or "
                         "repeated: article (essay), letter, summary, zh2en, en2zh. Default: all in --data.")] = None,
        generate_only: Annotated[bool, typer.Option("--generate-only", help="Answer only; judge later by rerunning "
                                 "with a judge (answers already there are kept).")] = False,
        concurrency: Annotated[Optional[int], typer.Option("--concurrency", min=1, help="Prompts answered together "
                               "(local batch, or requests in flight to --endpoint).")] = None,
        max_tokens: MaxTokens = 1024,
        timeout: Annotated[float, typer.Option("--timeout", min=1, help="Seconds per request to an endpoint "
                           "(model or judge) before it is retried.")] = 600.0,
        n_ctx: NCtx = None):
    """Run the card's office-task bench: answer every prompt, have a judge grade each answer 1–10 against
    the reference, and print the card's table (per-task means and their average) beside the card's
    published rows, with judge-free reference metrics and Traditional-Chinese fidelity.

    Writes `resp_*.jsonl`, `judge_*.jsonl`, `eval_*.json`, `bench_summary.json`, `bench_run.json` and
    `report.md` / `report.json` / `report.png` in OUT. Interrupted? Run the same command again: it resumes.
    A judge that is the evaluated model, or the embedded smollm2-135m, is flagged: its scores mean nothing.
    `--system none` sends no system prompt.

    Example: `taide eval bench --endpoint http://gpu:8000/v1 --judge-endpoint https://api.openai.com/v1
    --judge-model gpt-4o --system taide -o runs/taide-8b`
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from taide.eval.commands import EvalBenchConfig, run_eval_bench

    with _errors():
        config = EvalBenchConfig(out_dir=out_dir, model=model, endpoint=endpoint, served_model=served_model,
                                 api_key=api_key, engine=engine, data=data, judge_endpoint=judge_endpoint,
                                 judge_model=judge_model, judge_api_key=judge_api_key,
                                 judge_concurrency=judge_concurrency, judge_max_tokens=judge_max_tokens, system=system,
                                 tasks=tasks, generate_only=generate_only, concurrency=concurrency,
                                 max_tokens=max_tokens, timeout=timeout, n_ctx=n_ctx)
        with Progress(TextColumn("{task.description:<16}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=err) as progress:
            bars: dict[tuple[str, str], object] = {}

            def on_progress(stage, task_name, done, total):
                key = (stage, task_name)
                if key not in bars:
                    bars[key] = progress.add_task(f"{stage} {task_name}", total=total)
                progress.update(bars[key], completed=done, total=total)

            result = run_eval_bench(config, on_progress=on_progress, status=err.status)
        if result.unanswered:
            err.print(f"[yellow]{result.unanswered} prompts got no answer (listed in the report); rerun to retry them[/]")
        _show_report(result.report, result.files)
        out.print(f"[dim]{result.seconds:.0f} s[/]")


@eval_app.command("mc")
def eval_mc(model: Model,
            paths: Annotated[list[Path], typer.Argument(help="Exam files or directories (every .csv/.jsonl/.json "
                             "under them). TMMLU: subjects/<科目>/data.csv with header ',content.A,content.Q' (options "
                             "(A)…(D) inside the question); TMMLU+, TMLU, TW Legal: question,A,B,C,D,answer as CSV "
                             "or JSONL; TTQA: its JSON {id: {category, question, choices, answer}}.")],
            out_dir: Annotated[Path, typer.Option("--out", "-o", help="Directory for mc_records.jsonl and "
                               "mc_summary.json (overwritten).")],
            shots: Annotated[int, typer.Option("--shots", "-k", min=0, help="Answered examples from the same "
                             "subject before each question (not scored).")] = 0,
            limit_per_subject: Annotated[Optional[int], typer.Option("--limit-per-subject", min=1,
                                         help="Score at most this many items per subject.")] = None,
            runs: Annotated[int, typer.Option("--runs", min=1, help="Ask every item this many times, each run "
                            "with the options shuffled (seeded); report mean ± std.")] = 1,
            seed: Annotated[int, typer.Option("--seed", help="Seed of the option shuffles (--runs).")] = 0,
            method: Annotated[str, typer.Option("--method", help="auto (log-likelihood when the engine can score, "
                              "else generation), loglikelihood, or generate.")] = "auto",
            engine: EngineOpt = "auto", system: System = "auto", api_key: ApiKey = None, n_ctx: NCtx = None,
            max_tokens: Annotated[int, typer.Option("--max-tokens", help="Answer length when generating.")] = 32,
            seen: Annotated[Optional[list[Path]], typer.Option("--seen", help="The model's training data: a corpus "
                            "(files or folders, searched for the exam items) or a decontamination report (its "
                            "decontamination.json, or the folder holding it); repeatable. Accuracy is then given "
                            "apart for items the training data held and items it did not.")] = None):
    """Multiple-choice exams (TMMLU, TMMLU+, TMLU, TTQA, TW Legal): accuracy per subject, per category and
    overall, beside chance and beside the published leaderboard figures of the card's model.

    Writes `mc_records.jsonl` (one line per question and run: gold, predicted, letter scores or the answer text)
    and `mc_summary.json` in OUT, and prints which letters the model picks (a model near chance often just
    picks one). `--runs 3` shuffles the options in each run and reports mean ± std. `--system none` sends no
    system prompt. A local model is scored on the transformers engine unless `--engine` says otherwise (a GGUF
    through its dequantized copy): reading exam prompts is its strength on a CPU.

    `--seen` splits the accuracy into items the training data held (seen), items checked and not found (unseen:
    the figure to publish) and items too short to check.

    Example: `taide eval mc smollm2-135m data/tmmluplus --runs 3 --limit-per-subject 20 -o runs/mc-smol`
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from taide.eval.commands import EvalMCConfig, run_eval_mc

    with _errors():
        config = EvalMCConfig(model=model, paths=paths, out_dir=out_dir, shots=shots,
                              limit_per_subject=limit_per_subject, runs=runs, seed=seed, method=method, engine=engine,
                              system=system, api_key=api_key, n_ctx=n_ctx, max_tokens=max_tokens, seen=seen)
        with Progress(TextColumn("answering"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=err) as progress:
            bar = progress.add_task("mc", total=None)
            done = run_eval_mc(config, status=err.status,
                               on_progress=lambda n, total: progress.update(bar, completed=n, total=total))
        result, files = done.summary, done.files
        spread = result.get("spread", {})

        def accuracy(value, scope, name):
            if name in spread.get(scope, {}):
                return f"{spread[scope][name]['mean']:.1%} ± {spread[scope][name]['std']:.1%}"
            return f"{value:.1%}"

        table = Table(title=f"{result['model']['model']} · {result['method']} · {shots}-shot"
                            + (f" · {runs} runs, options shuffled" if runs > 1 else ""))
        for col in ("subject", "answers", "correct", "accuracy", "chance", "no answer"):
            table.add_column(col, justify="left" if col == "subject" else "right")
        for name, s in result["subjects"].items():
            table.add_row(name, str(s["n"]), str(s["correct"]), accuracy(s["accuracy"], "subjects", name),
                          f"{s['chance']:.1%}", str(s["extraction_failures"] + s["errors"]))
        for name, c in result["categories"].items():
            table.add_row(f"[italic]{name}[/]", str(c["n"]), str(c["correct"]),
                          accuracy(c["accuracy"], "categories", name), "", "")
        o = result["overall"]
        overall = (f"{spread['overall']['mean']:.1%} ± {spread['overall']['std']:.1%}" if spread
                   else f"{o['micro_accuracy']:.1%}")
        table.add_row("overall (micro)", str(o["n"]), str(o["correct"]), overall, f"{o['micro_chance']:.1%}",
                      str(o["extraction_failures"] + o["errors"]), style="bold")
        table.add_row("overall (macro)", "", "", f"{o['macro_accuracy']:.1%}", f"{o['macro_chance']:.1%}", "")
        out.print(table)
        for row in result["published"]:
            figures = ", ".join(f"{exam} {value:.2%}" for exam, value in row["accuracy"].items())
            out.print(f"[dim]published, not comparable number for number (other prompts and runs): {row['model']}, "
                      f"{row['source']}: {figures}[/]")
        letters, n = result["letters"], sum(result["letters"]["predicted"].values())
        share = ", ".join(f"{k} {v / n:.0%}" for k, v in letters["predicted"].items())
        gold_share = ", ".join(f"{k} {v / n:.0%}" for k, v in letters["gold"].items())
        out.print(f"predicted letters: {share} (gold: {gold_share})")
        if letters["top_share"] >= 0.9:
            out.print(f"[yellow]the model answers {letters['top']} {letters['top_share']:.0%} of the time: it just "
                      "picks one letter[/]")
        if "seen" in result:
            _print_seen(result["seen"])
        if result["bad_rows"]:
            out.print(f"[dim]{len(result['bad_rows'])} rows could not be used (listed in mc_summary.json)[/]")
        out.print(f"{o['n']} answers in {result['elapsed']:.0f} s → {files['records']}, {files['summary']}")


def _print_seen(seen: dict) -> None:
    table = Table(title="in the training data?")
    for col in ("items", "answers", "accuracy", "chance"):
        table.add_column(col, justify="right")
    table.add_column("what", justify="left")
    what = {"unseen": "checked, not in the training data: the figure to publish",
            "seen": "held by the training data", "unchecked": "too short to check, or not in a report"}
    for name, g in seen["groups"].items():
        o = g["overall"]
        table.add_row(str(g["items"]), str(o["n"]), f"{o['micro_accuracy']:.1%}" if o["n"] else "–",
                      f"{o['micro_chance']:.1%}" if o["n"] else "–", f"{name}: {what[name]}")
    out.print(table)
    for source in seen["sources"]:
        unreadable = f", {source['unreadable']} unreadable records" if source.get("unreadable") else ""
        out.print(f"[dim]{source['kind']} {source['source']}: {source['checked']} items checked, {source['seen']} seen"
                  f"{unreadable}[/]")


@eval_app.command("compare")
def eval_compare(runs: Annotated[list[Path], typer.Argument(help="Bench output directories (of `taide eval bench`).")],
                 out_dir: Annotated[Optional[Path], typer.Option("--out", "-o", help="Also write report.md, "
                                    "report.json and report.png here.")] = None,
                 no_published: Annotated[bool, typer.Option("--no-published", help="Leave out the card's "
                                         "published rows.")] = False):
    """The card's table across bench runs, with the card's published rows, reference metrics and fidelity.

    Example: `taide eval compare runs/smol runs/taide-8b -o runs/compare`
    """
    from taide.eval.commands import EvalCompareConfig, run_eval_compare

    with _errors():
        result = run_eval_compare(EvalCompareConfig(runs=runs, out_dir=out_dir, no_published=no_published))
        _show_report(result.report, result.files)


@data_app.command("sample")
def data_sample(target: Annotated[Path, typer.Argument(help="Directory to copy the raw sample corpus into.")]):
    """Copy the raw sample corpus that ships with taide (315 documents written for the project: news,
    letters, forum posts, reviews, HTML pages, Big5/UTF-16/GB18030 files, with PII, spam, Simplified text,
    mojibake, layout breaks and near-duplicates planted) and its MANIFEST.json into TARGET.

    Example: `taide data sample corpus/ && taide data clean corpus/raw -o cleaned/`
    """
    from taide.data.shipped import copy_sample_corpus

    with _errors():
        raw = copy_sample_corpus(target)
        out.print(f"copied the raw sample corpus to {raw} (what each document needs: {target / 'MANIFEST.json'})")


@data_app.command("convert")
def data_convert(inputs: Annotated[list[Path], typer.Argument(help="Files or folders of conversations: messages, "
                                                            "ShareGPT or Alpaca records; JSONL, JSON, Parquet, Arrow, "
                                                            "CSV/TSV, or a datasets folder.")],
                 out_file: Annotated[Path, typer.Option("--out", "-o", help="The messages JSONL to write.")],
                 on_bad_record: Annotated[str, typer.Option("--on-bad-record", help="Records that cannot be used: "
                                          "auto (leave out up to 1%, refuse more), skip, or error.")] = "auto"):
    """Write instruction-tuning conversations in any layout taide reads as taide's own: one
    {"messages": [{"role", "content"}, ...]} object a line (an "id" is kept). Each file's layout is detected
    and reported; records left out are named with their file, line and field.

    Example: `taide data convert alpaca.parquet sharegpt.json -o conversations.jsonl`
    """
    from taide.data.conversations import ConvertConfig, run_convert

    with _errors():
        result = run_convert(ConvertConfig(inputs=[str(p) for p in inputs], out=str(out_file),
                                           on_bad_record=on_bad_record))
        for source in result.sources:
            err.print(source.describe())
        for problem in result.problems[:5]:
            err.print(f"  left out: {problem}")
        if len(result.problems) > 5:
            err.print(f"  … and {len(result.problems) - 5} more left out")
        out.print(f"{result.written:,} conversations → {result.out}")


@app.command("build")
def build_command(recipe: Annotated[Optional[Path], typer.Argument(help="Build recipe YAML (default: the demo recipe "
                                                                   "on the embedded model and the shipped data).")] = None,
                  out_dir: Annotated[Optional[str], typer.Option("--out", "-o", help="Where the stages' artifacts go "
                                                                 "(default: the recipe's out).")] = None,
                  dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan (stages, tokens, GPU-hours) "
                                                        "and stop.")] = False,
                  from_stage: Annotated[Optional[str], typer.Option("--from", help="Redo this stage and the ones after.")] = None,
                  until_stage: Annotated[Optional[str], typer.Option("--until", help="Stop after this stage.")] = None,
                  smoke: Annotated[bool, typer.Option("--smoke", help="Run every stage of the recipe at toy scale on "
                                                      "this machine (a tiny model of the base's family, a few documents, "
                                                      "2 steps, the same executors, export, eval and card) into "
                                                      "--out or ./OUT-smoke (OUT: the recipe's out): the step before a cluster run. It "
                                                      "contacts none of the recipe's endpoints: a stub judge stands "
                                                      "in for its judge.")] = False,
                  probe_endpoints: Annotated[bool, typer.Option("--probe-endpoints", help="With --smoke: ask the "
                                                                "recipe's endpoints (its judge) whether they answer, "
                                                                "say so, and use those that do (also the recipe key "
                                                                "probe_endpoints: true).")] = False):
    """Run the card's chain — data → cp → sft → export → eval → card — as one recipe.

    Each stage writes an artifact directory with a manifest; a rerun skips stages whose inputs did not change, reruns a changed
    stage and everything after it, and a killed build resumes where it stopped. Ends with the model card
    (MODEL_CARD.md, in the card's structure) and the evaluation table.

    Example: `taide build` (the demo: ≈ 10 minutes on 2 CPU cores), or
    `taide build recipes/build/llama3-taide-8b.yaml --dry-run` (the card's own recipe: 2,336 H100-hours), then
    `taide build recipes/build/llama3-taide-8b.yaml --smoke` (all of it at toy scale, a few minutes) before the cluster
    """
    from taide.builder import BuildConfig, run_build

    with _errors():
        config = BuildConfig(recipe=recipe, out_dir=out_dir, dry_run=dry_run, from_stage=from_stage,
                             until_stage=until_stage, smoke=smoke, probe_endpoints=probe_endpoints)
        if dry_run:
            plan = run_build(config).plan
            table = Table(title=f"{plan['name']}: {plan['parameters'] / 1e9:.2f}B parameters ({plan['shape_from']})")
            for column in ("stage", "inputs / tokens", "FLOPs per token", "GPU-hours"):
                table.add_column(column)
            for row in plan["stages"]:
                what = (f"{len(row['inputs'])} inputs, {row['input_bytes'] / 1e6:,.1f} MB here" if "inputs" in row else
                        f"{row['tokens']:,.0f} tokens ({row['tokens_from']})" if row.get("tokens") else
                        row.get("tokens_from", ""))
                table.add_row(row["stage"], what, f"{row['flops_per_token']:.3g}" if "flops_per_token" in row else "",
                              f"{row['gpu_hours']:,.0f}" if row.get("gpu_hours") else "")
            out.print(table)
            if plan.get("gpu_hours"):
                compute = plan["compute"]
                out.print(f"≈ {plan['gpu_hours']:,.0f} {compute['device'].upper()} GPU-hours at "
                          f"{compute['mfu']:.0%} MFU (tokens × FLOPs per token ÷ peak × MFU)")
            published = plan.get("published")
            if published:
                mfu = published["implied_mfu"]
                out.print(f"the published {published['gpu_hours']:,} GPU-hours imply {mfu:.0%} MFU for these "
                          f"{published['training_flops']:.2e} training FLOPs"
                          + (": more than the GPUs' peak, so not a full-parameter run of these tokens (fewer "
                             "tokens, shorter sequences, frozen or adapter weights, or not counted hours)"
                             if mfu > 1 else " (30–45% is typical of well-tuned large runs)"))
            return

        progress = StepProgress(err)

        def on_event(kind, stage, manifest):
            if kind == "progress":  # a training step (steps, loss, tokens/s), or what the stage is doing now
                if "note" in manifest:
                    progress.note(stage, manifest["note"])
                else:
                    progress.step(stage, manifest["step"], manifest["total"], f"loss {manifest['loss']:.3f} · "
                                  f"{manifest['tokens_per_second']:,.0f} tokens/s")
                return
            progress.end(stage)
            if kind == "smoke":
                for change in manifest["changes"]:
                    err.print(f"[dim]smoke: {change}[/]")
            elif kind == "skip":
                err.print(f"[dim]{stage}: unchanged, skipped[/]")
            elif kind == "start":
                err.print(f"[bold]{stage}[/] …")
                progress.begin(stage)
            else:
                err.print(f"[green]{stage}[/] done in {manifest['seconds']:.0f} s")

        try:
            result = run_build(config, on_event=on_event)
        finally:
            progress.close()
        results = result.results
        card = results["card"].card if "card" in results else None
        evaluation = results.get("eval")
        report = evaluation.bench.get("report", {}) if evaluation else {}
        if report.get("markdown"):
            out.print(Path(report["markdown"]).read_text(encoding="utf-8"))
        taiwan = evaluation.taiwan.get("built") if evaluation else None
        if taiwan and taiwan.get("n"):
            out.print(f"Taiwan prompts never seen ({taiwan['n']}): {taiwan['language_ok_rate']:.0%} in the asked language, "
                      f"{taiwan['simplified_share_overall']:.2%} Simplified-only characters, "
                      f"{taiwan['degenerate_rate']:.0%} looping")
        proof = evaluation.proof if evaluation else {}
        for key, label in (("heldout_perplexity_cp", "held-out perplexity after CP"),
                           ("heldout_perplexity", "held-out perplexity"), ("heldout_chrf", "held-out chrF")):
            if key in proof:
                p = proof[key]
                note = " (within noise)" if p["within_noise"] else ""
                out.print(f"{label}: base {p['base']:.2f} → built {p['built']:.2f}{note}")
        # the GGUF on the fast engine (llama.cpp) when there is one; else the trained HF directory
        export, trained = results.get("export"), results.get("sft") or results.get("cp")
        model = export.path if export and export.format == "gguf" else trained.model if trained else None
        if card:
            out.print(f"model card: {card}")
        if model:
            out.print(f"chat with it:  taide chat {model}\nserve it:      taide serve {model}")


@app.command("export")
def export_command(model: Model,
                   fmt: Annotated[str, typer.Option("--format", help="gguf (llama.cpp, Ollama) or hf (merged safetensors "
                                                    "for transformers and vLLM).")] = "gguf",
                   quant: Annotated[str, typer.Option("--quant", help="f16, bf16, q8_0, q5_0, q5_1, q4_0, q4_1, q4_k_m, …")] = "f16",
                   out_path: Annotated[Optional[Path], typer.Option("--out", "-o", help="A .gguf path or a directory.")] = None,
                   verify: Annotated[bool, typer.Option("--verify", help="Compare the GGUF with the source model "
                                                        "(greedy tokens, log-probabilities, tokenizer ids) and fail "
                                                        "when it does not match.")] = False,
                   output_type: Annotated[Optional[str], typer.Option("--output-type", help="Type of the output "
                                                                 "projection (a tied embedding's too): f16, q8_0, …; "
                                                                 "f16 keeps a large vocabulary's logits exact.")] = None,
                   overwrite: Annotated[bool, typer.Option("--overwrite")] = False):
    """Export a model to GGUF (optionally quantized) or a merged Hugging Face directory.

    A GGUF carries the tokenizer, chat template and end-of-turn ids (an Ollama Modelfile is written beside it), quantized in Python (q8_0, q4_0, …) or through llama.cpp (K-quants); or a merged
    Hugging Face directory. LoRA adapter directories are merged first.

    Example: `taide export runs/sft/model --quant q4_k_m -o dist/ --verify`
    """
    from taide.export import ExportConfig, run_export

    with _errors():
        result = run_export(ExportConfig(model=model, format=fmt, quant=quant, out=out_path, verify=verify,
                                         output_type=output_type, overwrite=overwrite))
        size = f"{result.size_bytes / 1e6:,.1f} MB"
        bits = f", {result.bits_per_weight:.2f} bits/weight" if result.bits_per_weight else ""
        out.print(f"{result.path} ({size}{bits}, {result.seconds:.0f} s)")
        if result.modelfile:
            out.print(f"Ollama: ollama create my-taide -f {result.modelfile}")
        if result.verification is not None:
            out.print(result.verification.summary())


@app.command("verify")
def verify_command(gguf: Annotated[Path, typer.Argument(help="The GGUF file to check.")],
                   against: Annotated[str, typer.Option("--against", help="The source model (HF directory, .gguf, "
                                                        "or 'smollm2-135m'), run on transformers.")]):
    """Check a GGUF against its source model.

    Compares greedy continuations on Traditional-Chinese and English prompts, per-token log-probabilities, tokenizer ids on a Chinese/English/emoji set, the chat template and
    end-of-turn id, and perplexity.

    Example: `taide verify dist/model-q4_k_m.gguf --against runs/sft/model`
    """
    from taide.export import VerifyConfig, run_verify

    with _errors():
        out.print(run_verify(VerifyConfig(gguf=gguf, against=against)).summary())


def main():
    app()


if __name__ == "__main__":
    main()
