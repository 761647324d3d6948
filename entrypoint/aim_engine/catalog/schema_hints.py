"""JSON Schema errors -> (key path, one-line message, one-line hint).

jsonschema's messages are precise but written for schema authors; these rewrite the common
ones for people editing a recipe or a model file, and point the key path at the offending key
itself (an unexpected key, a bad property name) rather than at its parent object.
"""

from __future__ import annotations

from typing import Any, Iterator

from aim_engine.catalog.problems import KeyPath

TEMPLATE = {"recipe": "recipes/templates/recipe.yaml", "model": "models/schema.json"}

# Hints for `pattern` failures, by the last key of the path (or the property-name context).
PATTERN_HINTS: dict[str, str] = {
    "recipe_id": "lower-case {model}-{hardware}-{precision}, e.g. qwen3-32b-mi300x-bf16",
    "hardware": "a GPU model like MI300X or MI250, a gfx target like gfx942, or CPU",
    "model_id": "a Hugging Face id: owner/name",
    "huggingface_id": "a Hugging Face id: owner/name",
    "slug": "lower-case letters, digits, '.', '-'",
    "args": "flags are written in long form, lower case with dashes: --max-model-len",
    "env": "environment variable names are upper case: VLLM_USE_TRITON_FLASH_ATTN",
}


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _allowed_keys(schema: dict[str, Any]) -> list[str]:
    keys = list(schema.get("properties", {}))
    keys += [f"/{p}/" for p in schema.get("patternProperties", {})]
    return keys


def explain(error: Any, kind: str) -> Iterator[tuple[KeyPath, str, str]]:
    path: KeyPath = tuple(error.absolute_path)
    validator = error.validator
    schema = error.schema if isinstance(error.schema, dict) else {}
    instance = error.instance
    template = TEMPLATE[kind]

    if "propertyNames" in error.relative_schema_path:
        # The bad name itself is the instance; point at it.
        context = str(path[-1]) if path else ""
        yield ((*path, instance), f"bad key name {_short(instance)}",
               PATTERN_HINTS.get(context, "see the schema for allowed names"))
        return
    if validator == "additionalProperties" and isinstance(instance, dict):
        import re

        known = schema.get("properties", {})
        patterns = [re.compile(p) for p in schema.get("patternProperties", {})]
        extras = [k for k in instance if k not in known and not any(p.search(k) for p in patterns)]
        allowed = ", ".join(_allowed_keys(schema)) or "none"
        for key in extras:
            hint = f"remove it or fix the spelling; allowed here: {allowed}"
            if patterns and any("gpu" in p.pattern for p in patterns):
                hint = ("serving configs are named N_gpu (1_gpu, 2_gpu, 4_gpu, 8_gpu) or, for a group of "
                        "M ≥ 2 nodes, MxN_gpu (2x8_gpu = 2 nodes × 8 GPUs)")
            yield ((*path, key), f"unexpected key {key!r}", hint)
        return
    if validator == "required":
        # jsonschema raises one error per missing key; its message starts with the key's repr.
        key = error.message.split(" is a required property")[0].strip("'\"")
        yield (path, f"missing required key {key!r}", f"add `{key}:` (see {template})")
        return
    if validator == "anyOf" and error.validator_value and all(
            isinstance(s, dict) and set(s) == {"required"} for s in error.validator_value):
        options = " or ".join(s["required"][0] for s in error.validator_value)
        yield (path, f"needs at least one of: {options}", f"add a {options} section (see {template})")
        return
    if validator == "enum":
        allowed = ", ".join(str(v) for v in error.validator_value)
        yield (path, f"{_short(instance)} is not allowed", f"use one of: {allowed}")
        return
    if validator == "type":
        expected = error.validator_value
        expected = " or ".join(expected) if isinstance(expected, list) else expected
        hint = f"write a value of type {expected}"
        if isinstance(instance, (int, float)) and not isinstance(instance, bool) and "string" in str(expected):
            hint = f'quote it: "{instance}"'
        yield (path, f"{_short(instance)} is not of type {expected}", hint)
        return
    if validator == "pattern":
        key = str(path[-1]) if path else ""
        yield (path, f"{_short(instance)} does not match {error.validator_value}",
               PATTERN_HINTS.get(key, "see the schema for the allowed form"))
        return
    if validator in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        yield (path, f"{_short(instance)} is out of range ({validator} {error.validator_value})",
               "use a value within the allowed range")
        return
    if validator == "minProperties":
        yield (path, "is empty", "add at least one entry (for serve sections: an N_gpu config)")
        return
    if validator == "minLength":
        yield (path, f"{_short(instance)} is too short", f"at least {error.validator_value} characters")
        return
    if validator == "uniqueItems":
        yield (path, "has repeated items", "list each item once")
        return
    yield (path, error.message if len(error.message) < 200 else error.message[:197] + "...",
           f"see {template} and the schema")
