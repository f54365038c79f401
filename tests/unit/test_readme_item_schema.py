"""The captured item's JSON schema published in the README (the capture product's contract) is the
one the pydantic model validates with: this test fails when they drift apart.

Regenerate the README copy after changing the model:
``.venv/bin/python -m tests.unit.test_readme_item_schema --write``.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from ledgerlink.models.items import CapturedItem

README = Path(__file__).resolve().parents[2] / "README.md"
START, END = "<!-- item-schema:start -->", "<!-- item-schema:end -->"
BLOCK = re.compile(rf"{re.escape(START)}\n```json\n(?P<schema>.*?)\n```\n{re.escape(END)}", re.DOTALL)


def model_schema() -> dict[str, Any]:
    return CapturedItem.model_json_schema()


def rendered() -> str:
    return json.dumps(model_schema(), indent=2, sort_keys=True)


def test_the_readme_publishes_the_item_schema_the_model_validates_with():
    found = BLOCK.search(README.read_text())
    assert found, f"README.md has no item schema between {START} and {END}"
    assert json.loads(found.group("schema")) == model_schema(), (
        "the README's item schema differs from CapturedItem: run "
        ".venv/bin/python -m tests.unit.test_readme_item_schema --write"
    )


def test_the_readme_example_item_is_valid_against_the_model():
    """The example the README shows next to the schema is one the API accepts."""
    text = README.read_text()
    example = text[text.index("<!-- item-example:start -->") : text.index("<!-- item-example:end -->")]
    raw = example.split("```json\n", 1)[1].split("\n```", 1)[0]
    item = CapturedItem.model_validate_json(raw)
    assert item.type.value == "cost" and item.lines[0].category


def write() -> None:
    text = README.read_text()
    block = f"{START}\n```json\n{rendered()}\n```\n{END}"
    if not BLOCK.search(text):
        raise SystemExit(f"README.md has no {START} ... {END} block to replace")
    README.write_text(BLOCK.sub(lambda _m: block, text, count=1))


if __name__ == "__main__":
    if "--write" in sys.argv[1:]:
        write()
    else:
        print(rendered())
