"""`gemfuse pull`, `gemfuse plan`, `gemfuse quantize`: printing around gemfuse.weights."""

from __future__ import annotations

import json

from rich.console import Console
from rich.table import Table

GB = 10**9


def run_plan(model: str, *, device: str, memory: float | None, context: int | None, batch: int, train: str | None,
             revision: str | None, as_json: bool, shards: int = 1) -> int:
    from ..weights.plan import plan
    from ..weights.shape import read_shape

    result = plan(read_shape(model, revision=revision), device=device, memory_gb=memory, context=context,
                  batch=batch, train=train, shards=shards)
    if as_json:
        print(json.dumps(result.as_dict(), indent=2))
        return 0
    shape = result.shape
    console = Console()
    counted = "counted from its tensors" if shape.exact else "estimated from its config"
    have = f"{result.memory / GB:.1f} GB ({result.memory_source})" if result.memory else result.memory_source
    console.print(f"[bold]{shape.name}[/] ({shape.model_type}): {shape.params / 1e9:.2f} B parameters, {counted}; "
                  f"{len(shape.caches)} of {shape.layers} layers keep a KV cache; context up to {shape.max_context:,}")
    doing = f"training {result.train} on" if result.train else "inference at"
    if result.shards > 1:
        doing = f"per process, sharded across {result.shards} (train.shard = \"fsdp\"), {doing}"
    console.print(f"{doing} {result.context:,} tokens x batch {result.batch} on {result.device}: {have}")
    table = Table(caption="GB = 10^9 bytes; `--json` says how each precision is loaded", caption_justify="left")
    columns = ["precision", "weights", "training" if result.train else "KV cache", "runtime", "total", "verdict",
               "longest ctx"]
    for column in columns:
        table.add_column(column, justify="left" if column in ("precision", "verdict") else "right", no_wrap=True)
    colours = {"fits": "green", "too big": "red"}
    for row in result.rows:
        needs = row.needs
        verdict = f"[{colours.get(row.verdict, 'dim')}]{row.verdict.replace('not on this device', 'not here')}[/]"
        varying = needs.training if result.train else needs.kv_cache
        table.add_row(needs.precision, f"{needs.weights / GB:.2f}", f"{varying / GB:.2f}", f"{needs.runtime / GB:.2f}",
                      f"{needs.total / GB:.2f}", verdict, f"{row.max_context:,}" if row.max_context else "-")
    console.print(table)
    best = result.best()
    if best:
        console.print(f"widest precision that fits: [bold]{best.needs.precision}[/] (longest context "
                      f"{best.max_context:,})")
    elif result.memory:
        console.print("[red]nothing fits[/]: a smaller model, a shorter context, or a bigger device")
    if result.fewest_shards and result.fewest_shards > 1:
        console.print(f"sharded (train.shard = \"fsdp\" under torchrun), it fits from [bold]{result.fewest_shards}[/] "
                      f"processes of this memory each (--shards {result.fewest_shards} shows them)")
    for note in shape.notes:
        console.print(f"note: {note}")
    if any(r.needs.precision.startswith("gguf:") for r in result.rows) and any(c.window for c in shape.caches):
        console.print("note: llama.cpp keeps a full-size cache on sliding-window layers; transformers keeps the window")
    return 0


def run_pull(source: str, *, revision: str | None, include: list[str], gguf: str | None, name: str | None,
             config, force: bool) -> int:
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    from ..weights.pull import pull

    console = Console(stderr=True)
    with Progress(BarColumn(), DownloadColumn(), TransferSpeedColumn(), console=console, transient=True) as bar:
        task = bar.add_task("copy", total=None)
        pulled = pull(source, revision=revision, include=include or None, gguf=gguf, name=name, config=config,
                      force=force, progress=lambda done, total: bar.update(task, completed=done, total=total))
    resumed = pulled.bytes - pulled.copied
    console.print(f"{pulled.path} ({pulled.bytes / 2**20:,.1f} MiB"
                  + (f"; {resumed / 2**20:,.1f} MiB were there already" if resumed else "") + ")")
    console.print(f"registered as [bold]{pulled.name}[/] ({pulled.backend}) in {pulled.config}; try: "
                  f"gemfuse ask -m {pulled.name} \"Hello\"")
    return 0


def run_quantize(model: str, to: str, *, out, name: str | None, eval_items: int, as_json: bool, config) -> int:
    from ..api import gguf_accuracy
    from ..weights.pull import check_name_free, register
    from ..weights.quantize import quantize

    if name:
        from ..paths import config_path

        config_file = config or config_path()
        check_name_free(config_file, name, force=False)
    console = Console(stderr=True)
    with console.status(f"quantising {model} to {to} and measuring both"):
        done = quantize(model, to, out=out, accuracy=(lambda paths: gguf_accuracy(paths, eval_items))
                        if eval_items else None)
    if name:
        register(config_file, name, {"backend": "llamacpp", "path": str(done.result.path),
                                     "description": f"{model} quantised to {done.quant}"})
    if as_json:
        print(json.dumps(done.as_dict(), indent=2))
        return 0
    table = Table(title=f"{done.quant}: what it cost")
    for column in ("", "size MiB", "perplexity", "decode tok/s", "accuracy"):
        table.add_column(column, justify="right" if column else "left")
    for label, measured in (("source", done.source), (done.quant, done.result)):
        accuracy = f"{measured.accuracy:.1%}" if measured.accuracy is not None else "-"
        table.add_row(label, f"{measured.bytes / 2**20:,.1f}", f"{measured.perplexity:.3f}",
                      f"{measured.tokens_per_s:.1f}", accuracy)
    ratios = done.as_dict()
    table.add_row("ratio", f"{ratios['size_ratio']:.3f}", f"{ratios['perplexity_ratio']:.4f}",
                  f"{ratios['speed_ratio']:.3f}", "")
    Console().print(table)
    for note in done.notes:
        console.print(f"note: {note}")
    console.print(f"wrote {done.result.path}" + (f"; registered as [bold]{name}[/]" if name else ""))
    return 0
