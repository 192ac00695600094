"""MkDocs hook: the noise gallery page, one picture per family, made at build time.

Every name in ``noisejump.noise.available()`` gets a section with one draw rendered as a
PNG, so a family added to the registry appears without editing the docs. The draw uses the
family's registered example (``noisejump.noise.examples.EXAMPLES``) when there is one, else
``get_noise(name)`` with its defaults. A family that can be neither built nor drawn fails
the build (MkDocs runs with --strict): the gallery never silently drops a family.
"""

from __future__ import annotations

import importlib
import io

import torch
from mkdocs.structure.files import File, Files

PAGE = "gallery.md"
SHAPES = ((3, 64, 64), (8, 32, 32), (1, 64, 64))  # tried in order when no example is given
PIXELS = 160  # the rendered width and height of one panel


def on_files(files: Files, config) -> Files:
    from noisejump.noise import available, get_noise

    examples = _examples()
    lines = [
        "# Noise gallery",
        "",
        "One draw of every noise family in `noisejump.noise.available()`, generated when the",
        "documentation is built (`scripts/docs_gallery.py`). Each panel is one slice of the",
        "event (a channel or a frame), shown on a grey scale from -3 to 3 standard deviations;",
        "up to four slices side by side show the correlation across channels or frames.",
        "",
    ]
    for name in available():
        example = examples.get(name)
        family = example.build() if example is not None else get_noise(name)
        shapes = _shapes(example.stat) if example is not None else SHAPES
        image = _render(family, name, shapes)
        files.append(File.generated(config, f"img/gallery/{name}.png", content=image))
        summary = (type(family).__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
        params = getattr(example, "params", "") if example is not None else "defaults"
        lines += [f"## {name}", "", f"![{name}](img/gallery/{name}.png)", ""]
        lines += [f"`{type(family).__name__}` ({params or 'defaults'}): {summary}", ""]
    files.append(File.generated(config, PAGE, content="\n".join(lines)))
    return files


def _examples() -> dict:
    try:
        return importlib.import_module("noisejump.noise.examples").EXAMPLES
    except ModuleNotFoundError:
        return {}


def _shapes(stat: tuple[int, ...]) -> list[tuple[int, ...]]:
    """The example's event at 64 x 64 pixels when it takes that size, else as registered."""
    return [(*stat[:-2], 64, 64), stat] if len(stat) >= 3 else [stat]


def _render(family, name: str, shapes) -> bytes:
    from PIL import Image

    errors = []
    for event_shape in shapes:
        generator = torch.Generator().manual_seed(0)
        try:
            draw = family.sample((1, *event_shape), generator=generator)[0]
        except (ValueError, RuntimeError, TypeError) as error:
            errors.append(f"{event_shape}: {error}")
            continue
        panels = _panels(draw.to(torch.float64))
        scaled = ((panels / 3).clamp(-1, 1) + 1) * 127.5
        image = Image.fromarray(scaled.round().to(torch.uint8).numpy(), mode="L")
        factor = max(1, round(PIXELS / panels.shape[0]))  # nearest-neighbour upscaling
        size = (panels.shape[1] * factor, panels.shape[0] * factor)
        buffer = io.BytesIO()
        image.resize(size, Image.NEAREST).save(buffer, format="PNG")
        return buffer.getvalue()
    raise ValueError(f"gallery: noise family {name!r} could not be drawn: {errors}")


def _panels(draw: torch.Tensor) -> torch.Tensor:
    """A 2-D picture of one event: up to 4 leading slices side by side, 1 px apart."""
    if draw.dim() == 1:
        side = int(draw.numel() ** 0.5)
        draw = draw[: side * side].reshape(side, side) if side > 1 else draw.reshape(1, -1)
    if draw.dim() == 2:
        return draw / draw.std()
    slices = draw.reshape(-1, *draw.shape[-2:])[:4]
    slices = slices / slices.std()
    gap = torch.zeros(slices.shape[1], 1, dtype=slices.dtype)
    parts = []
    for k, panel in enumerate(slices):
        parts += [gap, panel] if k else [panel]
    return torch.cat(parts, dim=1)
