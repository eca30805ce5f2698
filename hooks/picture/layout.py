"""Where the picture puts things: zone boxes on a grid, their heights, text fitted to a width."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from hooks.picture.scene import Group, Reflector, Zone, short
from hooks.plan_view import natural

WIDTH = 1360  # fits a 1400 px window; the SVG also scales down with the page
MARGIN = 16
BUS_X = 12  # the vertical line of the RR↔RR backbone, left of the zone boxes
GAP = 40  # between zone boxes; the backbone runs through the gaps
LEGEND_H = 58
HEADER_TOP = 26  # the zone name; the counts wrap below it
COUNTS_LINE_H = 15
CELL_W = 132
CELL_H = 84
RADIUS = 17
BAND_LINE_H = 15
TILE_W = 128  # a rack: its name, its two RRs as dots, its cluster ID and clients
TILE_H = 50
DOT = 6
SECTION_H = 18  # "spine" / "racks" captions inside a hierarchy zone box
CHAR_W = 0.58  # average glyph width per font-size unit, a little generous for DejaVu Sans


def fit(text: str, width: float, size: float) -> str:
    """`text` shortened in the middle (names differ at the end) to fit `width` pixels."""
    room = max(4, int(width / (size * CHAR_W)))
    if len(text) <= room:
        return text
    head = (room - 1) // 2
    return text[:head] + "…" + text[len(text) - (room - 1 - head) :]


def wrap(words: Sequence[str], width: float, size: float) -> list[str]:
    room = max(8, int(width / (size * CHAR_W)))
    lines: list[str] = []
    line = ""
    for word in words:
        candidate = f"{line} {word}" if line else word
        if line and len(candidate) > room:
            lines.append(line)
            candidate = "  " + word
        line = candidate
    if line:
        lines.append(line)
    return [fit(text, width, size) for text in lines]


@dataclass(frozen=True)
class Frame:
    x: float
    y: float
    w: float
    h: float


def _columns(count: int) -> int:
    return {1: 1, 2: 2, 4: 2}.get(count, 3)


def cells_per_row(width: float) -> int:
    return max(1, int((width - 16) // CELL_W))


def _group_text(group: Group, domain: str) -> list[str]:
    noun = "client" if group.clients == 1 else "clients"
    names = [short(rr, domain) for rr in group.reflectors]
    return [f"{group.name} · {group.clients} {noun}:", *(f"{n}," for n in names[:-1]), *names[-1:]]


def band_lines(groups: Sequence[Group], width: float, domain: str) -> list[tuple[Group, list[str]]]:
    """Each group with its text wrapped to a band `width` pixels wide."""
    return [(g, wrap(_group_text(g, domain), width - 16, 11)) for g in groups]


def counts_lines(zone: Zone, width: float) -> list[str]:
    c = zone.counts
    words = [
        f"{c['nodes']:,} nodes",
        f"{c['ready']:,} ready",
        f"{c['eligible']:,} eligible",
        f"demand {c['demand']:,}",
        f"{len(zone.reflectors):,} RRs here",
    ]
    room = max(8, int((width - 20) / (11.5 * CHAR_W)))
    lines: list[str] = []
    for word in words:
        if lines and len(lines[-1]) + 3 + len(word) <= room:
            lines[-1] += " · " + word
        else:
            lines.append(word)
    return lines


def header_h(zone: Zone, width: float) -> float:
    return HEADER_TOP + len(counts_lines(zone, width)) * COUNTS_LINE_H + 12


@dataclass(frozen=True)
class Rack:
    name: str
    label: str  # the rack name without its zone's prefix
    reflectors: tuple[Reflector, ...]
    clients: int


def zone_racks(zone: Zone) -> list[Rack]:
    """The zone's rack RRs, grouped by the rack they serve, in natural rack order."""
    by_rack: dict[str, list[Reflector]] = {}
    for rr in zone.reflectors:
        if rr.role == "rack":
            by_rack.setdefault(rr.serves or "", []).append(rr)
    clients = {g.rack: g.clients for g in zone.groups if g.rack is not None}
    prefix = f"{zone.name}-" if zone.name else ""
    return [
        Rack(
            rack,
            rack[len(prefix) :] if prefix and rack.startswith(prefix) and rack != prefix else rack,
            tuple(sorted(by_rack[rack], key=lambda rr: rr.node)),
            clients.get(rack, 0),
        )
        for rack in sorted(by_rack, key=natural)
    ]


def tiles_per_row(width: float) -> int:
    return max(1, int((width - 16) // TILE_W))


def cell_reflectors(zone: Zone, topology: str) -> tuple[Reflector, ...]:
    """The RRs drawn as full cells: all of them, except rack RRs in hierarchy (tiles)."""
    if topology == "hierarchy":
        return tuple(rr for rr in zone.reflectors if rr.role != "rack")
    return zone.reflectors


def banded(zone: Zone, topology: str) -> tuple[Group, ...]:
    """Groups listed in bands: racks in hierarchy are the tiles already."""
    if topology == "hierarchy":
        return tuple(g for g in zone.groups if g.rack is None)
    return zone.groups


def body_h(zone: Zone, width: float, topology: str) -> float:
    """Height of the RR cells (and in hierarchy the spine and rack sections) of a zone box."""
    cells = cell_reflectors(zone, topology)
    rows = (
        math.ceil(len(cells) / cells_per_row(width))
        if cells
        else (0 if topology == "hierarchy" else 1)
    )
    if topology != "hierarchy":
        return rows * CELL_H
    racks = zone_racks(zone)
    tiles = math.ceil(len(racks) / tiles_per_row(width)) if racks else 0
    height = (SECTION_H + rows * CELL_H if cells else 0) + (
        SECTION_H + tiles * (TILE_H + 6) if racks else 0
    )
    return height or CELL_H


def _zone_height(zone: Zone, width: float, domain: str, topology: str) -> float:
    groups = banded(zone, topology)
    band = sum(len(lines) for _, lines in band_lines(groups, width - 16, domain)) * BAND_LINE_H
    return header_h(zone, width) + body_h(zone, width, topology) + (band + 14 if band else 0) + 6


def place_zones(zones: Sequence[Zone], domain: str, topology: str) -> tuple[list[Frame], float]:
    """Zone boxes on a grid (rows as tall as their tallest box) and the height they take."""
    cols = _columns(len(zones))
    left = BUS_X + 18
    width = (WIDTH - left - MARGIN - (cols - 1) * GAP / 2) / cols
    frames: list[Frame] = []
    y: float = LEGEND_H + GAP
    for start in range(0, len(zones), cols):
        row = zones[start : start + cols]
        height = max(_zone_height(z, width, domain, topology) for z in row)
        for i in range(len(row)):
            frames.append(Frame(left + i * (width + GAP / 2), y, width, height))
        y += height + GAP
    return frames, y - GAP
