"""The docs' Python examples run as written (one namespace per page, blocks in order)."""

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


PAGES = [
    "docs/shortcut.md",
    "docs/categorical.md",
    "docs/noise-families.md",
    "docs/keyed-noise.md",
    "docs/samplers.md",
    "docs/weightings.md",
    "docs/diffusion-forcing.md",
    "README.md",
]


@pytest.mark.parametrize("page", PAGES)
def test_examples_run(page, capsys):
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / page).read_text(), re.S)
    assert blocks, f"{page} has no Python example"
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, page, "exec"), namespace)


ROLE = re.compile(r":(?:class|meth|func|attr|mod|obj|data|exc):`")


def test_no_sphinx_roles_in_docstrings():
    """mkdocstrings renders Markdown: a Sphinx role appears verbatim (":class:`Schedule`").
    Cross-references are written [`Schedule`][noisejump.Schedule] or plain backticks."""
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in sorted((ROOT / "src").rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if ROLE.search(line)
    ]
    assert not found, "\n".join(found)
    assert ROLE.search("Returns a :class:`VerifyReport`.")  # the pattern finds one


MATH_PAGES = [
    "mathematics",
    "shortcut",
    "categorical",
    "continuous",
    "noise-families",
    "keyed-noise",
    "samplers",
    "weightings",
    "diffusion-forcing",
]


def test_formulas_are_marked_as_mathematics_and_mathjax_is_loaded():
    config = (ROOT / "mkdocs.yml").read_text()
    assert re.search(r"pymdownx\.arithmatex:\n\s+generic: true", config)
    scripts = re.search(r"extra_javascript:\n((?:\s+- .*\n)+)", config).group(1).split()
    assert "javascripts/mathjax.js" in scripts and (ROOT / "docs/javascripts/mathjax.js").exists()
    assert any(re.search(r"mathjax@3/es5/tex-[a-z-]+\.js$", script) for script in scripts)
    assert "arithmatex" in (ROOT / "docs/javascripts/mathjax.js").read_text()
    for page in MATH_PAGES:
        text = (ROOT / "docs" / f"{page}.md").read_text()
        formulas = re.findall(r"^\$\$\n.+?\n\$\$$|\$[^$\n]+\$", text, re.S | re.M)
        assert len(formulas) >= 8, f"{page}: {len(formulas)} formulas marked as TeX"
        # no formula left as an indented plain-text block ("    x_t = sqrt(abar_t) ...")
        assert not re.search(r"^    \S.*(?:sqrt\(|abar)", text, re.M), page


def test_gallery_panels_are_labelled(monkeypatch):
    import io

    import numpy as np
    from PIL import Image

    from noisejump.noise import get_noise

    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    docs_gallery = importlib.import_module("docs_gallery")
    png = docs_gallery._render(get_noise("pink"), "pink", [(3, 16, 16)])
    picture = np.asarray(Image.open(io.BytesIO(png)))
    panel = 16 * round(docs_gallery.PIXELS / 16)
    assert picture.shape[0] > panel + 24  # a title above and labels below the panels
    title, labels = picture[:14], picture[-14:]
    assert (title < 128).any() and (labels < 128).any()
