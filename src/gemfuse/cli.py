"""The command line: thin wrappers that import the heavy parts only when a command runs."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path

import typer

from .commands.options import bounds, flag, shown_default, with_fusion_options, with_options
from .distil.settings import DistilSettings
from .evals.settings import EvalSettings
from .models.base import MaxTokens, Temperature, TopP

eval_options = with_options(EvalSettings.model_fields, into="eval_settings", short={"temperature": "-t"},
                            default_note=shown_default)
LABEL_FIELDS = ("teacher", "eval", "max_tokens", "temperature", "seed", "concurrency")
FILTER_FIELDS = ("min_agree", "swap_agreed", "drop_degraded", "verify", "scorer", "pattern", "min_chars", "max_chars",
                 "dedupe", "near_duplicate", "val_fraction", "seed")


def distil_options(names: tuple[str, ...] | None = None) -> Callable[[Callable], Callable]:
    fields = {k: v for k, v in DistilSettings.model_fields.items() if names is None or k in names}
    return with_options(fields, into="distil_settings", default_note=shown_default)

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Run, fine-tune and fuse your own models.")

@app.callback()
def _global(verbose: bool = typer.Option(False, "--verbose", "-v",
                                         help="show the libraries' own warnings and logs (otherwise written to "
                                              "libraries.log in the gemfuse cache folder)")) -> None:
    from .quiet import quiet_libraries

    quiet_libraries(verbose)


ConfigOpt = typer.Option(None, "--config", "-c", help="config file (TOML); default: $GEMFUSE_CONFIG or the user config folder")


def _fail(message: str, code: int = 1) -> None:
    typer.secho(f"error: {message}", fg="red", err=True)
    raise typer.Exit(code)


def _handled(command: Callable) -> Callable:
    """The one place a command's failure becomes one red line and exit code 1: gemfuse's own errors say what
    to do; a file the system refused is named with the reason. Anything else is a bug and keeps its traceback."""
    @functools.wraps(command)
    def run(*args, **kwargs):
        from .errors import GemfuseError, SettingError

        try:
            return command(*args, **kwargs)
        except SettingError as exc:  # named by its option here, by its setting in Python
            _fail(exc.for_command_line())
        except GemfuseError as exc:
            _fail(str(exc))
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            _fail(f"{where}{exc.strerror or exc}")

    return run


@app.command()
@_handled
def models(config: Path | None = ConfigOpt,
           as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table")) -> None:
    """List the configured models: backend, where they live, modalities, and whether they are usable now."""
    from .commands.models import list_models

    list_models(config, as_json)


@app.command()
@_handled
def env(as_json: bool = typer.Option(False, "--json", help="print JSON instead of text")) -> None:
    """What to paste into a bug report: versions, device, llama.cpp's build, which library patches fit, paths."""
    from .commands.env import show

    show(as_json)


@app.command()
@_handled
@with_fusion_options
def ask(prompt: str = typer.Argument(..., help="the question; '-' reads it from standard input"),
        model: str | None = typer.Option(None, "--model", "-m", help="model name, or fusion/PRESET (see `gemfuse models`)"),
        image: list[Path] = typer.Option([], "--image", help="attach an image file (repeatable)"),
        audio: list[Path] = typer.Option([], "--audio", help="attach an audio file (repeatable)"),
        system: str | None = typer.Option(None, "--system", "-s", help="system prompt"),
        max_tokens: int | None = typer.Option(None, "--max-tokens", **bounds(MaxTokens),
                                              help="answer length (default: 512; a fusion: its preset's)"),
        temperature: float | None = typer.Option(None, "--temperature", "-t", **bounds(Temperature)),
        top_p: float | None = typer.Option(None, "--top-p", **bounds(TopP), help="nucleus sampling, above 0"),
        seed: int | None = typer.Option(None, "--seed"),
        stop: list[str] = typer.Option([], "--stop", help="stop sequence (repeatable)"),
        pool: str | None = typer.Option(None, "--pool", help="fuse these models: a,b,c"),
        judge: str | None = typer.Option(None, "--judge", help="the fusion's judge model"),
        mode: str | None = typer.Option(None, "--mode",
                                    help="fusion mode: vote | best-of | merge | debate | self | confidence | cascade"),
        preset: str | None = typer.Option(None, "--preset", "-p", help="a fusion preset (built in: default)"),
        show_candidates: bool = typer.Option(False, "--show-candidates", help="print each member's answer"),
        trace: Path | None = typer.Option(None, "--trace", help="append the fusion trace to this JSONL file"),
        as_json: bool = typer.Option(False, "--json", help="print the completion (or the fusion trace) as JSON"),
        capture: Path | None = typer.Option(None, "--capture", help="keep the answer as a training row in this folder"),
        schema: Path | None = typer.Option(None, "--schema", help="answer with JSON of this JSON schema file"),
        tools: Path | None = typer.Option(None, "--tools", help="a JSON file of function tools the model may call "
                                          "(calls are printed one a line)"),
        tool_choice: str | None = typer.Option(None, "--tool-choice", help="auto | required | none | a function name"),
        config: Path | None = ConfigOpt, fusion_settings: dict | None = None) -> None:
    """Ask one model, or fuse a pool of models (--pool / --preset / -m fusion/NAME), and stream the answer.
    Every fusion setting is an option here, as in fuse() and the server's `fusion` block."""
    from .commands.ask import read_contract
    from .fusion.preset import FUSION_PREFIX

    contract = read_contract(schema, tools, tool_choice)

    if prompt == "-":
        prompt = sys.stdin.read()
    named = model.removeprefix(FUSION_PREFIX) if model and model.startswith(FUSION_PREFIX) else None
    if pool or preset or judge or mode or named:
        from .commands.ask import build_messages
        from .commands.fusion import run_fusion_ask
        from .registry import Registry

        registry = Registry.load(config)
        fusion = dict(pool=pool.split(",") if pool else None, judge=judge, mode=mode, seed=seed,
                      preset=preset or named or (None if pool else "default"), trace_path=trace,
                      max_tokens=max_tokens, temperature=temperature, **(fusion_settings or {}), **contract)
        run_fusion_ask(build_messages(prompt, image, audio, system), registry=registry,
                       settings={k: v for k, v in fusion.items() if v is not None},
                       show_candidates=show_candidates, as_json=as_json, capture=capture)
    elif fusion_settings:
        given = ", ".join(flag(k) for k in fusion_settings)
        _fail(f"{given}: fusion settings; add --pool a,b or --preset NAME (or -m fusion/NAME)", code=2)
    else:
        from .commands.ask import run_ask

        options = dict(max_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed, stop=stop, **contract)
        run_ask(prompt, model=model, images=image, audio=audio, system=system, config=config, as_json=as_json,
                options={k: v for k, v in options.items() if v is not None}, capture=capture)


@app.command()
@_handled
def embed(texts: list[str] = typer.Argument(..., help="the texts; '-' reads one a line from standard input"),
          model: str = typer.Option("embed", "--model", "-m", help="the built-in 'embed', a GGUF model or a remote one"),
          config: Path | None = ConfigOpt) -> None:
    """Print each text's embedding as a JSON line: {"text": ..., "embedding": [...]}."""
    from .commands.embed import run_embed

    if texts == ["-"]:
        texts = [line for line in sys.stdin.read().splitlines() if line.strip()]
    run_embed(texts, model, config)


data_app = typer.Typer(no_args_is_help=True, help="Training data: import, validate, preview.")
app.add_typer(data_app, name="data")


@data_app.command("import")
@_handled
def data_import(source: Path = typer.Argument(..., help="a CSV, a folder of images or audio, Alpaca or ShareGPT JSON"),
                out: Path = typer.Option(..., "--out", "-o", help="the JSONL to write"),
                fmt: str = typer.Option("auto", "--format", help="auto | csv | images | audio | alpaca | sharegpt | xlam"),
                instruction: str | None = typer.Option(None, "--instruction", help="user text for caption/transcript rows"),
                val_out: Path | None = typer.Option(None, "--val-out", help="also write a validation split here"),
                val_fraction: float = typer.Option(0.1, "--val-fraction", min=0.0, max=0.9),
                seed: int = typer.Option(0, "--seed")) -> None:
    """Convert an existing dataset into gemfuse's JSONL chat format."""
    from .commands.data import run_import

    raise typer.Exit(run_import(source, out, fmt, instruction, val_out, val_fraction, seed))


@data_app.command("validate")
@_handled
def data_validate(file: Path, model: str = typer.Option(..., "--model", "-m",
                                                       help="gemma3 | gemma3n | gemma4 | a model folder | a configured model"),
                  max_length: int | None = typer.Option(None, "--max-length", min=16),
                  val: Path | None = typer.Option(None, "--val", help="a validation file: checked too, and for leakage"),
                  as_json: bool = typer.Option(False, "--json")) -> None:
    """Check a dataset before training: every problem with file:line; exit 1 on errors."""
    from .commands.data import run_validate

    code = run_validate(file, model, max_length, val, as_json)
    raise typer.Exit(code)


@data_app.command("preview")
@_handled
def data_preview(file: Path, model: str = typer.Option(..., "--model", "-m"),
                 n: int = typer.Option(3, "-n", min=1), max_length: int | None = typer.Option(None, "--max-length")) -> None:
    """Show rows as the model will see them, trained tokens marked, media token counts."""
    from .commands.data import run_preview

    raise typer.Exit(run_preview(file, model, n, max_length))


@app.command()
@_handled
def tune(config: Path | None = typer.Argument(None, help="the tune config (TOML)"),
         set_: list[str] = typer.Option([], "--set", help="override a config key: section.key=value (repeatable)"),
         resume: Path | None = typer.Option(None, "--resume", help="continue this run folder from its last checkpoint"),
         init: str | None = typer.Option(None, "--init", help="print a commented config for text | image | audio")) -> None:
    """Fine-tune a Gemma with LoRA on text, image and audio data; Ctrl-C checkpoints, --resume continues."""
    from .commands.tune import run_tune

    code = run_tune(config, set_, resume, init)
    raise typer.Exit(code)


@app.command("export")
@_handled
def export_(run: Path = typer.Argument(..., help="a run folder from gemfuse tune"),
            to: str = typer.Option("merged", "--to", help="merged | gguf | ollama | vllm | vllm-lora"),
            quant: str | None = typer.Option(None, "--quant", help="GGUF quantisation, e.g. Q4_K_M or Q8_0"),
            out: Path | None = typer.Option(None, "--out", "-o", help="where to write (default: inside the run)"),
            prompt: str = typer.Option("Hello!", "--prompt", help="what the export is asked to prove it generates")) -> None:
    """Export a fine-tune: merged safetensors, a GGUF for llama.cpp, an Ollama Modelfile + GGUF, or for vLLM."""
    from .commands.tune import run_export

    code = run_export(run, to, quant, out, prompt)
    raise typer.Exit(code)


@app.command()
@_handled
def pull(source: str = typer.Argument(..., help="a hub id (owner/name), a model folder or a GGUF file"),
         revision: str | None = typer.Option(None, "--revision", help="hub branch, tag or commit"),
         include: list[str] = typer.Option([], "--include", help="only files matching this pattern (repeatable)"),
         gguf: str | None = typer.Option(None, "--gguf", help="only the GGUF of this quant type, e.g. Q4_K_M"),
         name: str | None = typer.Option(None, "--name", help="the short name to register (default: from SOURCE)"),
         force: bool = typer.Option(False, "--force", help="replace a model of that name in the config"),
         config: Path | None = ConfigOpt) -> None:
    """Download or copy weights (resumable) and register them in the config under a short name."""
    from .commands.weights import run_pull

    code = run_pull(source, revision=revision, include=include, gguf=gguf, name=name, config=config, force=force)
    raise typer.Exit(code)


@app.command()
@_handled
def plan(model: str = typer.Argument(..., help="a model folder, a GGUF file, a configured model or a hub id"),
         device: str = typer.Option("cpu", "--device", help="cuda | mps | cpu"),
         memory: float | None = typer.Option(None, "--memory", min=0.1, help="GB to plan for (default: this device's)"),
         context: int | None = typer.Option(None, "--context", min=1, help="tokens (default: the model's, up to 8192)"),
         batch: int = typer.Option(1, "--batch", min=1, help="sequences at once"),
         train: str | None = typer.Option(None, "--train", help="lora | qlora: plan a fine-tune instead"),
         shards: int = typer.Option(1, "--shards", min=1, help="with --train lora: per process, sharded across N"),
         revision: str | None = typer.Option(None, "--revision", help="hub revision of the config"),
         as_json: bool = typer.Option(False, "--json")) -> None:
    """Will it fit? Memory per precision (weights, KV cache, runtime, training) from the config alone."""
    from .commands.weights import run_plan

    code = run_plan(model, device=device, memory=memory, context=context, batch=batch, train=train,
                    revision=revision, as_json=as_json, shards=shards)
    raise typer.Exit(code)


@app.command()
@_handled
def quantize(model: str = typer.Argument(..., help="a model folder, a GGUF file or a configured local model"),
             to: str = typer.Option(..., "--to", help="gguf:Q4_K_M | gguf:Q8_0 | gguf:Q5_K_M | ... (llama.cpp types)"),
             out: Path | None = typer.Option(None, "--out", "-o", help="the GGUF to write (default: gemfuse's models folder)"),
             name: str | None = typer.Option(None, "--name", help="register the result in the config under this name"),
             eval_items: int = typer.Option(0, "--eval", min=0, help="also compare accuracy on N built-in arithmetic items"),
             as_json: bool = typer.Option(False, "--json"),
             config: Path | None = ConfigOpt) -> None:
    """Quantise for llama.cpp and report the cost: size, perplexity on a fixed text, speed (and accuracy)."""
    from .commands.weights import run_quantize

    code = run_quantize(model, to, out=out, name=name, eval_items=eval_items, as_json=as_json, config=config)
    raise typer.Exit(code)


@app.command("eval")
@_handled
@eval_options
def eval_(dataset: str = typer.Argument(..., help="builtin:arithmetic | builtin:word | builtin:math (-choice), a JSONL, "
                                                   "a GSM8K file, a datasets folder or .parquet"),
          out: Path | None = typer.Option(None, "--out", "-o", help="write report.json, report.md, records, a PNG here"),
          cache: str | None = typer.Option(None, "--cache", help="the SQLite answer cache, or 'off' (default: the user cache)"),
          as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
          config: Path | None = ConfigOpt, eval_settings: dict | None = None) -> None:
    """Score models, fine-tunes and fusion modes on one eval set: accuracy with intervals, paired tests against
    the best member and the base, cost, latency, and the judge's position bias. Every call is cached.
    Every setting is an option here and a keyword of gemfuse.evaluate()."""
    from .commands.evals import run_eval

    raise typer.Exit(run_eval(dataset, out=out, config=config, cache=cache, as_json=as_json,
                              settings=eval_settings or {}))


distil_app = typer.Typer(no_args_is_help=True, help="Distil a teacher (a fusion or a strong model) into a small "
                                                    "model you own: label, filter, run.")
app.add_typer(distil_app, name="distil")
SettingsOpt = typer.Option(None, "--settings", help="a distil TOML file with any of these settings")
CacheOpt = typer.Option(None, "--cache", help="the SQLite answer cache, or 'off' (default: the user's eval cache)")


@distil_app.command("label")
@_handled
@distil_options(LABEL_FIELDS)
def distil_label(prompts: Path = typer.Argument(..., help="our JSONL (answers optional), an eval set, a capture folder"),
                 out: Path = typer.Option(..., "--out", "-o", help="the folder for labelled.jsonl and its media"),
                 cache: str | None = CacheOpt, settings: Path | None = SettingsOpt,
                 as_json: bool = typer.Option(False, "--json", help="print the label report as JSON"),
                 config: Path | None = ConfigOpt, distil_settings: dict | None = None) -> None:
    """Run the prompts through the teacher, every call cached: a killed run resumes and pays no call twice."""
    from .commands.distil import run_label

    raise typer.Exit(run_label(prompts, out=out, cache=cache, settings_file=settings, config=config,
                               as_json=as_json, given=distil_settings or {}))


@distil_app.command("filter")
@_handled
@distil_options(FILTER_FIELDS)
def distil_filter(folder: Path = typer.Argument(..., help="a folder with labelled.jsonl (from distil label)"),
                  settings: Path | None = SettingsOpt,
                  as_json: bool = typer.Option(False, "--json", help="print the filter report as JSON"),
                  distil_settings: dict | None = None) -> None:
    """Keep the rows that pass the rules; each dropped row's reason goes to dropped.jsonl."""
    from .commands.distil import run_filter

    raise typer.Exit(run_filter(folder, settings_file=settings, as_json=as_json, given=distil_settings or {}))


@distil_app.command("run")
@_handled
@distil_options()
def distil_run(prompts: Path = typer.Argument(..., help="our JSONL (answers optional), an eval set, a capture folder"),
               out: Path = typer.Option(Path("distil"), "--out", "-o", help="every stage's output and report.json"),
               cache: str | None = CacheOpt, settings: Path | None = SettingsOpt,
               as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
               config: Path | None = ConfigOpt, distil_settings: dict | None = None) -> None:
    """label -> filter -> tune -> eval, the student registered in the config; reports the share of the teacher's
    gain the student kept. Every stage resumes: run it again after a stop."""
    from .commands.distil import run_distil

    raise typer.Exit(run_distil(prompts, out=out, cache=cache, settings_file=settings, config=config,
                                as_json=as_json, given=distil_settings or {}))


@app.command()
@_handled
def serve(host: str = typer.Option("127.0.0.1", "--host", help="address to bind; others need an API key set"),
          port: int = typer.Option(8000, "--port"),
          workers: int = typer.Option(1, "--workers", min=1,
                                      help="processes sharing the port; more than 1 serves remote models only"),
          capture: Path | None = typer.Option(None, "--capture", help="keep every answered request as a training row "
                                                                      "in this folder (for gemfuse distil)"),
          runs: Path | None = typer.Option(None, "--runs", help="fine-tune run folders the dashboard shows "
                                                                 "([server] runs_dir; default runs)"),
          evals: Path | None = typer.Option(None, "--evals", help="eval reports the dashboard shows "
                                                                   "([server] evals_dir; default evals)"),
          distil: Path | None = typer.Option(None, "--distil", help="distil runs the dashboard shows "
                                                                     "([server] distil_dir; default distil)"),
          config: Path | None = ConfigOpt) -> None:
    """Serve every model and fusion preset over an OpenAI-compatible API, with a web page at / (a playground, and
    a dashboard of your fine-tunes, evals and distil runs)."""
    from .serve.app import serve as run_server

    run_server(host=host, port=port, config=config, workers=workers, capture=capture,
               folders={"runs": runs, "evals": evals, "distil": distil})


def main() -> None:
    app()


if __name__ == "__main__":
    main()
