"""`gemfuse models`: what is configured, where it lives, and whether it can be used right now."""

from __future__ import annotations

import asyncio
import json

from ..registry import Registry


async def describe(registry: Registry) -> list[dict]:
    async def one(name: str) -> dict:
        spec = registry.spec(name)
        model = registry.get(name)
        try:
            ok, detail = await model.check()
        except Exception as exc:  # a broken plugin must not hide the other rows
            ok, detail = False, f"check failed: {type(exc).__name__}: {exc}"
        price = spec.price.model_dump() if spec.price else None
        return {"name": name, "backend": spec.backend, "where": model.where(),
                "modalities": sorted(getattr(spec, "modalities", None) or model.modalities),
                "reachable": ok, "detail": detail, "price_per_million": price, "description": spec.description}

    try:
        rows = list(await asyncio.gather(*(one(n) for n in registry.names())))
        by_name = {row["name"]: row for row in rows}
        for name in registry.names(presets=True)[len(rows):]:
            model = registry.get(name)
            preset = registry.preset(name)
            broken = [m for m in preset.model_names() if not by_name[m]["reachable"]]
            rows.append({"name": name, "backend": "fusion", "where": model.where(), "modalities": ["text"],
                         "reachable": not broken, "detail": f"unusable: {', '.join(broken)}" if broken else "ok",
                         "price_per_million": None, "description": preset.description})
        return rows
    finally:
        await registry.aclose()


def list_models(config, as_json: bool) -> list[dict]:
    registry = Registry.load(config)
    rows = asyncio.run(describe(registry))
    if as_json:
        print(json.dumps(rows, indent=2))
        return rows
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"models ({registry.config.path or 'built-ins only'})")
    for column in ("name", "backend", "where", "modalities", "status"):
        table.add_column(column, overflow="fold")
    for row in rows:
        status = "[green]ok[/]" if row["reachable"] else f"[red]{row['detail']}[/]"
        if row["reachable"] and row["detail"] != "ok":
            status = f"[green]ok[/] ({row['detail']})"
        table.add_row(row["name"], row["backend"], row["where"], ",".join(row["modalities"]), status)
    Console().print(table)
    return rows
