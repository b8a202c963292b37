"""The alert contract's compatibility rule: within a major version only optional fields are added."""
import json

from contract.compat import breaking_changes
from contract.events import SCHEMA_DIR, SCHEMA_VERSION, SCHEMAS, json_schema


def schema(**properties) -> dict:
    return {"type": "object", "required": ["event", "region"], "$defs": {
        "Region": {"type": "object", "required": ["flux_Mx"], "properties": {"flux_Mx": {"type": "number"}}}},
        "properties": {"event": {"enum": ["opened", "closed"], "type": "string"}, "region": {"$ref": "#/$defs/Region"},
                       **properties}}


def test_adding_optional_fields_and_enum_values_is_compatible():
    old = schema()
    new = schema(note={"anyOf": [{"type": "string"}, {"type": "null"}]})
    new["properties"]["event"]["enum"].append("updated")
    new["$defs"]["Region"]["properties"]["bbox"] = {"type": "object"}
    assert breaking_changes(old, new) == []


def test_every_breaking_change_is_named():
    old = schema(note={"type": "string"})
    new = schema(note={"type": "integer"})
    new["required"].append("added")
    new["properties"]["added"] = {"type": "string"}
    new["properties"]["event"]["enum"] = ["opened"]
    new["$defs"]["Region"]["properties"] = {"flux_mx": {"type": "number"}}
    assert breaking_changes(old, new) == [
        "added: a new field is required",
        "event: lost the values ['closed']",
        "region.flux_Mx: removed",
        "note: its type changed from string to integer",
    ]


def test_kept_schemas_of_the_current_major_version_are_compatible():
    major = SCHEMA_VERSION.split(".")[0]
    for name in SCHEMAS:
        current = json_schema(name)
        for path in sorted(SCHEMA_DIR.glob(f"{name}-*.schema.json")):
            version = path.name.removesuffix(".schema.json").rsplit("-", 1)[1]
            changes = breaking_changes(json.loads(path.read_text()), current)
            if version.split(".")[0] == major:  # an older major may also have changed only its rules (patch-status 3 → 4)
                assert changes == [], (path.name, changes)
    old = json.loads((SCHEMA_DIR / "alert-event-3.0.schema.json").read_text())
    assert "region.flux_positive_mx: removed" in breaking_changes(old, json_schema("alert-event"))
