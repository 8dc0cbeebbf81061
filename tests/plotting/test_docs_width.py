"""The gallery's code and the documentation's code blocks fit the page: 79 characters.

The pages show code in a column about 79 characters wide; longer lines are cut off
behind a scroll bar. ``examples/ruff.toml`` makes the formatter wrap the gallery there;
this test also covers the literal blocks of the ``.rst`` pages.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WIDTH = 79


def _rst_code_lines(path: Path):
    """(line number, shown width, text) of every line inside a literal block."""
    lines = path.read_text(encoding="utf-8").split("\n")
    in_block, base, body = False, 0, None
    for number, line in enumerate(lines, 1):
        text = line.strip()
        starts = re.match(r"\s*\.\. (code-block|code|sourcecode)::", line) or (
            line.rstrip().endswith("::") and not text.startswith("..")
        )
        if starts:
            in_block, base, body = True, len(line) - len(line.lstrip()), None
            continue
        if not in_block or not text:
            continue
        indent = len(line) - len(line.lstrip())
        if indent <= base:
            in_block = False
            continue
        if body is None and text.startswith(":"):  # the directive's options
            continue
        body = indent if body is None else body
        yield number, len(line.rstrip()) - body, text


def _rst_pages():
    docs = ROOT / "docs"
    skip = {"_build", "generated", "auto_examples"}
    return sorted(p for p in docs.rglob("*.rst") if not skip & set(p.relative_to(docs).parts))


@pytest.mark.skipif(not (ROOT / "examples").is_dir(), reason="no examples/ (installed copy)")
def test_gallery_lines_fit_the_page():
    long = [
        f"{path.name}:{number}: {len(line)}"
        for path in sorted((ROOT / "examples").glob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").split("\n"), 1)
        if len(line) > WIDTH
    ]
    assert not long, f"gallery lines longer than {WIDTH} characters: {long}"


@pytest.mark.skipif(not (ROOT / "docs").is_dir(), reason="no docs/ (installed copy)")
def test_rst_code_blocks_fit_the_page():
    long = [
        f"{path.relative_to(ROOT)}:{number}: {width}"
        for path in _rst_pages()
        for number, width, _ in _rst_code_lines(path)
        if width > WIDTH
    ]
    assert not long, f"code lines longer than {WIDTH} characters: {long}"
