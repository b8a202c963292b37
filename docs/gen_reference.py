"""Reference pages generated from the code at build time (mkdocs-gen-files): the command lines from their argument
parsers, the HTTP API from its OpenAPI document, the settings from the settings model, the alert schemas from
their files."""
from __future__ import annotations

import contextlib
import io
import json
import tempfile
import tomllib
from importlib import import_module
from pathlib import Path

import mkdocs_gen_files

ROOT = Path(__file__).resolve().parents[1]


def cli() -> str:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    out = ["# Command lines\n", "Each command's `--help`, as its argument parser writes it.\n"]
    for name, target in scripts.items():
        module, func = target.split(":")
        text = io.StringIO()
        with contextlib.redirect_stdout(text), contextlib.suppress(SystemExit):
            getattr(import_module(module), func)(["--help"])
        out += [f"## `{name}`\n", "```text", text.getvalue().replace(module.split(".")[-1] + ".py", name).rstrip(),
                "```\n"]
    return "\n".join(out)


def http_api() -> str:
    from common.config import DEFAULT_BUNDLE, ServiceConfig
    from serving.api import create_app
    from serving.compose import open_service

    with tempfile.TemporaryDirectory() as tmp:
        spec = create_app(open_service(ServiceConfig(data_dir=tmp, bundle=str(ROOT / DEFAULT_BUNDLE), source="watch",
                                                warm_start=False))).openapi()
    out = ["# HTTP API\n", f"{spec['info']['description']} Version {spec['info']['version']}; a running service serves "
           "this document at `/openapi.json` and an explorer at `/docs`.\n", "| method | path | what |", "| --- | --- | --- |"]
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            what = (op.get("description") or op.get("summary", "")).split("\n\n")[0].replace("\n", " ").replace("|", "\\|")
            out.append(f"| {method.upper()} | `{path}` | {what} |")
    out += ["\n## The OpenAPI document\n", "```json", json.dumps(spec, indent=1), "```"]
    return "\n".join(out)


def settings() -> str:
    from common.config import ServiceConfig

    out = ["# Settings\n", "`fluxwatch-serve`'s settings (`common.config.ServiceConfig`): a flag, then the environment "
           "(`FLUXWATCH_<FIELD>`), then a TOML file (`--config`), then the default. Angles and times are astropy "
           "quantities, given as text with their unit (`FLUXWATCH_LAT_LIMIT=\"40 deg\"`).\n",
           "| setting | default | what |", "| --- | --- | --- |"]
    for name, field in ServiceConfig.model_fields.items():
        default = field.default_factory() if field.default_factory else field.default  # type: ignore[call-arg]
        what = (field.description or "").replace("|", "\\|")
        out.append(f"| `{name}` | `{default}` | {what} |")
    return "\n".join(out)


def metrics() -> str:
    from serving.metrics import Metrics

    out = ["# Metrics\n", "What `GET /metrics` exports, from the service's registry (`serving.metrics.Metrics`).\n",
           "| name | type | labels | what |", "| --- | --- | --- | --- |"]
    for family in Metrics().registry.collect():
        labels = sorted({k for sample in family.samples for k in sample.labels if k != "le"})
        name = family.name + ("_total" if family.type == "counter" else "")
        out.append(f"| `{name}` | {family.type} | {', '.join(labels)} | {family.documentation} |")
    return "\n".join(out)


def schemas() -> str:
    out = ["# Alert schemas\n", "The JSON Schemas of the Kafka messages (`deploy/schemas/`, written from "
           "`contract.events`), and the VOEvent schema the HEK exports are checked against.\n"]
    for path in sorted((ROOT / "deploy" / "schemas").glob("*.json")):
        out += [f"## `{path.name}`\n", "```json", path.read_text().rstrip(), "```\n"]
    return "\n".join(out)


for page, make in (("cli.md", cli), ("http-api.md", http_api), ("settings.md", settings), ("metrics.md", metrics),
                   ("alert-schemas.md", schemas)):
    with mkdocs_gen_files.open(f"reference/{page}", "w") as f:
        f.write(make())
