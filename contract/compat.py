"""The compatibility rule of the published schemas: within a major version, only new optional fields are added.

A consumer written against one version must be able to read every later version of the same major version
(ignoring the fields it does not know), so between two such versions a property may not be removed, change its
type, or become required, and no new property may be required. Anything else is a new major version
(:data:`contract.events.SCHEMA_VERSION`, new topics).
"""
from __future__ import annotations


def _resolve(schema: dict, node: dict) -> dict:
    """``node`` with a local ``$ref`` (``#/$defs/Name``) followed."""
    while "$ref" in node:
        node = schema["$defs"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def _kind(schema: dict, node: dict) -> object:
    """What a reader relies on of a property: its JSON type(s), or the object or union it refers to."""
    node = _resolve(schema, node)
    if "anyOf" in node:
        return sorted(str(_kind(schema, n)) for n in node["anyOf"])
    if "enum" in node:
        return ("enum", node.get("type"))
    return node.get("type", "object" if "properties" in node else None)


def breaking_changes(old: dict, new: dict, where: str = "") -> list[str]:
    """Every change from the JSON Schema ``old`` to ``new`` that a reader of ``old`` could not take, as
    ``path: what`` lines (none when ``new`` only adds optional fields and enum values)."""
    return _object(old, _resolve(old, old), new, _resolve(new, new), where)


def _object(old_schema: dict, old: dict, new_schema: dict, new: dict, where: str) -> list[str]:
    out = []
    old_props, new_props = old.get("properties", {}), new.get("properties", {})
    for name in sorted(set(new.get("required", [])) - set(old.get("required", []))):
        out.append(f"{where}{name}: " + ("became required" if name in old_props else "a new field is required"))
    for name, prop in old_props.items():
        path = f"{where}{name}"
        if name not in new_props:
            out.append(f"{path}: removed")
            continue
        a, b = _resolve(old_schema, prop), _resolve(new_schema, new_props[name])
        if _kind(old_schema, prop) != _kind(new_schema, new_props[name]):
            out.append(f"{path}: its type changed from {_kind(old_schema, prop)} to {_kind(new_schema, new_props[name])}")
        elif "enum" in a and set(a["enum"]) - set(b.get("enum", [])):
            out.append(f"{path}: lost the values {sorted(set(a['enum']) - set(b.get('enum', [])))}")
        elif "properties" in a:
            out += _object(old_schema, a, new_schema, b, path + ".")
    return out
