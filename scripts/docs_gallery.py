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
        "documentation is built (`scripts/docs_gallery.py`). Each picture is titled with the",
        "family and the event shape of the draw; each panel is one slice of the event, labelled",
        "below: `x[k]` is channel k (frame k for the video families), shown on a grey scale from",
        "-3 to 3 standard deviations. Up to four slices side by side show the correlation",
        "across channels or frames.",
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
    errors = []
    for event_shape in shapes:
        generator = torch.Generator().manual_seed(0)
        try:
            draw = family.sample((1, *event_shape), generator=generator)[0]
        except (ValueError, RuntimeError, TypeError) as error:
            errors.append(f"{event_shape}: {error}")
            continue
        slices, labels = _slices(draw.to(torch.float64))
        buffer = io.BytesIO()
        _labelled(slices, labels, f"{name}, event {tuple(event_shape)}").save(buffer, format="PNG")
        return buffer.getvalue()
    raise ValueError(f"gallery: noise family {name!r} could not be drawn: {errors}")


def _slices(draw: torch.Tensor) -> tuple[list[torch.Tensor], list[str]]:
    """Up to 4 leading 2-D slices of one event, scaled to unit standard deviation together,
    and their labels: x[k] for slice k, or how a 1-D event was folded into a square."""
    if draw.dim() == 1:
        side = int(draw.numel() ** 0.5)
        if side > 1:
            label = f"x[:{side * side}] as {side} x {side}"
            draw = draw[: side * side].reshape(side, side)
        else:
            label, draw = "x", draw.reshape(1, -1)
        return [draw / draw.std()], [label]
    if draw.dim() == 2:
        return [draw / draw.std()], ["x"]
    slices = draw.reshape(-1, *draw.shape[-2:])[:4]
    slices = slices / slices.std()
    # x[k]: channel or frame k; deeper events: slice k of the leading axes flattened
    name = "x[{}]" if draw.dim() == 3 else "slice {}"
    return list(slices), [name.format(k) for k in range(len(slices))]


def _labelled(slices: list[torch.Tensor], labels: list[str], title: str):
    """The slices side by side on a grey scale from -3 to 3 standard deviations, upscaled
    (nearest neighbour) to about ``PIXELS`` high, each labelled below, a title above."""
    from PIL import Image, ImageDraw, ImageFont

    height, width = slices[0].shape
    factor = max(1, round(PIXELS / height))
    gap, text = 6, 16
    tile_w = max(width * factor, 48)
    font = ImageFont.load_default(size=12)
    title_w = int(font.getlength(title)) + 2
    out_w = max(len(slices) * (tile_w + gap) - gap, title_w)
    out = Image.new("L", (out_w, height * factor + 2 * text), 255)
    draw = ImageDraw.Draw(out)
    for k, (panel, label) in enumerate(zip(slices, labels, strict=True)):
        scaled = ((panel / 3).clamp(-1, 1) + 1) * 127.5
        tile = Image.fromarray(scaled.round().to(torch.uint8).numpy(), mode="L")
        tile = tile.resize((width * factor, height * factor), Image.NEAREST)
        left = k * (tile_w + gap) + (tile_w - width * factor) // 2
        out.paste(tile, (left, text))
        middle = k * (tile_w + gap) + tile_w / 2
        draw.text((middle, height * factor + text + 2), label, fill=0, font=font, anchor="mt")
    draw.text((0, 1), title, fill=0, font=font)
    return out
