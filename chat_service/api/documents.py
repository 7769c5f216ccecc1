"""The API documents as text: what the service serves and what the repository
commits under openapi/.

`python -m chat_service.api.documents` (`make openapi`) rewrites the
committed files; with `--check` it only reports whether they are current.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Final

import yaml

from .asyncapi import build_asyncapi
from .spec import build_openapi

__all__ = ["DOCUMENTS", "main", "render_asyncapi", "render_openapi"]


def render_openapi() -> str:
    """The OpenAPI document as JSON text (indented, so diffs of the committed copy read well)."""
    return json.dumps(build_openapi(), indent=2, ensure_ascii=False) + "\n"


class _Dumper(yaml.SafeDumper):
    """Writes multi-line strings (the Markdown descriptions) as literal blocks."""


def _represent_str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _represent_str)


def render_asyncapi() -> str:
    """The AsyncAPI document as YAML text, keys in the order the code builds them."""
    return yaml.dump(
        build_asyncapi(), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100
    )


# Each committed file, relative to the repository root, and what it must hold.
DOCUMENTS: Final = {
    Path("openapi/openapi.json"): render_openapi,
    Path("openapi/asyncapi.yaml"): render_asyncapi,
}


def main(argv: list[str] | None = None) -> int:
    """Write the documents under the current directory; `--check`: only compare.

    Returns 0, or 1 when `--check` finds a file out of date.
    """
    check = "--check" in (sys.argv[1:] if argv is None else argv)
    stale = []
    for path, render in DOCUMENTS.items():
        text = render()
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        if check:
            stale.append(str(path))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    if stale:
        print(f"out of date: {', '.join(stale)}; run `make openapi`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
