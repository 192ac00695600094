"""The docs' Python examples run as written (one namespace per page, blocks in order)."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


PAGES = ["docs/shortcut.md", "docs/noise-families.md", "docs/keyed-noise.md", "README.md"]


@pytest.mark.parametrize("page", PAGES)
def test_examples_run(page, capsys):
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / page).read_text(), re.S)
    assert blocks, f"{page} has no Python example"
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, page, "exec"), namespace)
