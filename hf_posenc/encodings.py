"""What encodings exist, with their options and defaults (the README table is generated from this)."""

from __future__ import annotations

from typing import Any

from .modeling.posenc_all import registered_encodings


def available_encodings() -> dict[str, dict[str, Any]]:
    """{name: {"kind", "relative", "description", "backends", "options": {option: {"default", "doc"}}}}."""
    return {
        name: {
            "kind": cls.kind,
            "relative": cls.relative,
            "description": cls.description,
            "backends": list(cls.backends),
            "options": {key: {"default": opt.default, "doc": opt.doc} for key, opt in cls.options.items()},
        }
        for name, cls in registered_encodings().items()
    }


def encodings_table() -> str:
    """A Markdown table of every encoding and its options."""
    rows = [
        "| encoding | what it is | hooks in at | relative | options (`name=default`: meaning) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, spec in available_encodings().items():
        options = "<br>".join(f"`{key}={opt['default']!r}`: {opt['doc']}" for key, opt in spec["options"].items())
        relative = "yes" if spec["relative"] else "no"
        rows.append(f"| `{name}` | {spec['description']} | {spec['kind']} | {relative} | {options or '-'} |")
    return "\n".join(rows)
