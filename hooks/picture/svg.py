"""The picture as inline SVG: legend, RR↔RR backbone, zone boxes, RR cells, rack tiles, bands."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

from hooks.picture.layout import (
    BAND_LINE_H,
    BUS_X,
    CELL_H,
    COUNTS_LINE_H,
    DOT,
    GAP,
    HEADER_TOP,
    LEGEND_H,
    MARGIN,
    RADIUS,
    SECTION_H,
    TILE_H,
    WIDTH,
    Frame,
    Rack,
    band_lines,
    banded,
    body_h,
    cell_reflectors,
    cells_per_row,
    counts_lines,
    fit,
    header_h,
    place_zones,
    tiles_per_row,
    zone_racks,
)
from hooks.picture.scene import (
    NEUTRAL,
    PALETTE,
    RACK_COLOUR,
    SPINE_COLOUR,
    Group,
    Reflector,
    Scene,
    Zone,
    short,
)
from hooks.plan_view import zone_label


def escape(text: object) -> str:
    return html.escape(str(text), quote=True)


def _text(x: float, y: float, text: str, cls: str, anchor: str = "start") -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" class="{cls}" text-anchor="{anchor}">{escape(text)}</text>'
    )


def _circle(cx: float, cy: float, rr: Reflector, colour: str) -> list[str]:
    cls = {"Pending": "pending", "Draining": "draining"}.get(rr.state, "active")
    fill = {"pending": "#fff", "draining": "url(#hatch)"}.get(cls, colour)
    parts = []
    if rr.role == "spine":
        parts.append(
            f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{RADIUS + 4}" class="spine" '
            f'stroke="{colour}"/>'
        )
    parts.append(
        f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{RADIUS}" class="{cls}" fill="{fill}" '
        f'stroke="{colour}"/>'
    )
    parts.append(_text(cx, cy + 4.5, str(rr.clients), f"count-{cls}", "middle"))
    return parts


def _caption(rr: Reflector) -> str:
    words = []
    if rr.role == "spine":
        words.append("spine")
    elif rr.role == "rack":
        words.append(f"rack {rr.serves}")
    elif rr.serves is not None:
        words.append(f"serves {zone_label(rr.serves)}")
    if rr.state != "Active":
        words.append(rr.state)
    return " · ".join(words)


def _reflector_cell(frame: Frame, rr: Reflector, colour: str, domain: str) -> str:
    cx, cy = frame.x + frame.w / 2, frame.y + RADIUS + 6
    parts = [
        f"<g><title>{escape(rr.node)} ({escape(rr.cluster_id)}, {escape(rr.state)}, "
        f"{rr.clients} clients)</title>"
    ]
    parts += _circle(cx, cy, rr, colour)
    parts.append(
        _text(cx, cy + RADIUS + 16, fit(short(rr.node, domain), frame.w - 6, 11), "rr", "middle")
    )
    parts.append(_text(cx, cy + RADIUS + 29, rr.cluster_id, "cid", "middle"))
    caption = _caption(rr)
    if caption:
        parts.append(_text(cx, cy + RADIUS + 41, fit(caption, frame.w - 6, 10), "cap", "middle"))
    parts.append("</g>")
    return "".join(parts)


def _zone_header(zone: Zone, frame: Frame) -> list[str]:
    parts = [
        _text(frame.x + 10, frame.y + 20, fit(zone_label(zone.name), frame.w - 20, 15), "zone")
    ]
    for i, line in enumerate(counts_lines(zone, frame.w)):
        y = frame.y + HEADER_TOP + 12 + i * COUNTS_LINE_H
        parts.append(_text(frame.x + 10, y, fit(line, frame.w - 20, 11.5), "counts"))
    return parts


def _dot(cx: float, cy: float, rr: Reflector, colour: str) -> str:
    cls = {"Pending": "pending", "Draining": "draining"}.get(rr.state, "active")
    fill = {"pending": "#fff", "draining": "url(#hatch)"}.get(cls, colour)
    return (
        f"<g><title>{escape(rr.node)} ({escape(rr.cluster_id)}, {escape(rr.state)}, "
        f"{rr.clients} clients)"
        f'</title><circle cx="{cx:.1f}" cy="{cy:.1f}" r="{DOT}" class="{cls}" fill="{fill}" '
        f'stroke="{colour}"/></g>'
    )


def _rack_tile(frame: Frame, rack: Rack, scene: Scene) -> list[str]:
    """A rack as one tile: its name and clients, its RRs as dots, the cluster ID they share."""
    ids = sorted({rr.cluster_id for rr in rack.reflectors})
    noun = "client" if rack.clients == 1 else "clients"
    parts = [
        f'<g class="rack"><title>rack {escape(rack.name)}: '
        f"{escape(', '.join(rr.node for rr in rack.reflectors))} "
        f"({escape(', '.join(ids))})</title>",
        f'<rect x="{frame.x:.1f}" y="{frame.y:.1f}" width="{frame.w - 6:.1f}" '
        f'height="{frame.h:.1f}" rx="4" class="tile"/>',
        _text(frame.x + 6, frame.y + 14, fit(rack.label, frame.w - 14, 11), "tile-name"),
        "</g>",
    ]
    for i, rr in enumerate(rack.reflectors):
        colour = scene.colours.get(rr.cluster_id, NEUTRAL)
        parts.append(_dot(frame.x + 6 + DOT + i * (2 * DOT + 5), frame.y + 28, rr, colour))
    after = frame.x + 6 + len(rack.reflectors) * (2 * DOT + 5) + 2
    parts.append(
        _text(after, frame.y + 32, fit(", ".join(ids), frame.x + frame.w - after, 10), "cid")
    )
    parts.append(
        _text(frame.x + 6, frame.y + 45, fit(f"{rack.clients} {noun}", frame.w - 14, 10), "cap")
    )
    return parts


def _bands(groups: Sequence[Group], x: float, y: float, width: float, scene: Scene) -> list[str]:
    parts = []
    for group, lines in band_lines(groups, width, scene.domain):
        colour = _group_colour(group, scene)
        height = len(lines) * BAND_LINE_H
        parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{width - 4:.1f}" height="{height - 2}" '
            f'rx="3" class="band" fill="{colour}"/>'
        )
        parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="6" height="{height - 2}" fill="{colour}"/>'
        )
        for i, line in enumerate(lines):
            parts.append(_text(x + 12, y + 11 + i * BAND_LINE_H, line, "grp"))
        y += height
    return parts


def _group_colour(group: Group, scene: Scene) -> str:
    by_node = {rr.node: rr.cluster_id for z in scene.zones for rr in z.reflectors}
    ids = {by_node.get(rr, "") for rr in group.reflectors}
    return scene.colours.get(ids.pop(), NEUTRAL) if len(ids) == 1 else NEUTRAL


def _zone_box(zone: Zone, frame: Frame, scene: Scene) -> list[str]:
    parts = [
        f'<g class="zone-box"><rect x="{frame.x:.1f}" y="{frame.y:.1f}" '
        f'width="{frame.w:.1f}" height="{frame.h:.1f}" rx="8" class="zbox"/>'
    ]
    parts += _zone_header(zone, frame)
    top = frame.y + header_h(zone, frame.w)
    hierarchy = scene.topology == "hierarchy"
    cells = cell_reflectors(zone, scene.topology)
    y = top
    if hierarchy and cells:
        parts.append(_text(frame.x + 10, y + 12, f"spine · {len(cells)} RR", "section"))
        y += SECTION_H
    per_row = cells_per_row(frame.w)
    cell_w = (frame.w - 16) / per_row
    for i, rr in enumerate(cells):
        row, col = divmod(i, per_row)
        cell = Frame(frame.x + 8 + col * cell_w, y + row * CELL_H, cell_w, CELL_H)
        colour = scene.colours.get(rr.cluster_id, NEUTRAL)
        parts.append(_reflector_cell(cell, rr, colour, scene.domain))
    y += math.ceil(len(cells) / per_row) * CELL_H
    racks = zone_racks(zone) if hierarchy else []
    if racks:
        rrs = sum(len(r.reflectors) for r in racks)
        parts.append(
            _text(frame.x + 10, y + 12, f"racks · {len(racks)} racks, {rrs} rack RRs", "section")
        )
        y += SECTION_H
        tiles = tiles_per_row(frame.w)
        tile_w = (frame.w - 16) / tiles
        for i, rack in enumerate(racks):
            row, col = divmod(i, tiles)
            tile = Frame(frame.x + 8 + col * tile_w, y + row * (TILE_H + 6), tile_w, TILE_H)
            parts += _rack_tile(tile, rack, scene)
    if not zone.reflectors:
        parts.append(_text(frame.x + 10, top + 30, "no route reflector here", "cap"))
    band_y = top + body_h(zone, frame.w, scene.topology) + 8
    parts += _bands(banded(zone, scene.topology), frame.x + 8, band_y, frame.w - 16, scene)
    parts.append("</g>")
    return parts


def _backbone_caption(scene: Scene) -> str:
    rrs = [rr for z in scene.zones for rr in z.reflectors]
    if scene.topology == "hierarchy":
        spines = sum(1 for rr in rrs if rr.role == "spine")
        shape = f"spine mesh of {spines} spine RRs, every rack RR ↔ every spine RR"
    else:
        shape = f"full mesh of {len(rrs)} RRs"
    note = f" · names shown without {scene.domain}" if scene.domain else ""
    return f"RR↔RR peering: {shape} · {scene.rr_sessions} sessions{note}"


def _stub_label(zone: Zone, topology: str) -> str:
    if topology == "hierarchy":
        spines = sum(1 for rr in zone.reflectors if rr.role == "spine")
        return f"{spines} spine · {len(zone.reflectors) - spines} rack"
    return f"{len(zone.reflectors)} RRs"


def _backbone(scene: Scene, frames: Sequence[Frame]) -> list[str]:
    """One line through the gaps joining every zone box: the RR↔RR sessions, drawn once."""
    parts = [_text(BUS_X, LEGEND_H + 10, _backbone_caption(scene), "bus-label")]
    rows = sorted({f.y for f in frames})
    buses = [y - GAP / 2 + 4 for y in rows]
    parts.append(
        f'<line x1="{BUS_X}" y1="{buses[0]:.1f}" x2="{BUS_X}" y2="{buses[-1]:.1f}" class="bus"/>'
    )
    for y, bus in zip(rows, buses, strict=True):
        right = max(f.x + f.w / 2 for f in frames if f.y == y)
        parts.append(
            f'<line x1="{BUS_X}" y1="{bus:.1f}" x2="{right:.1f}" y2="{bus:.1f}" class="bus"/>'
        )
    for zone, frame in zip(scene.zones, frames, strict=True):
        if not zone.reflectors:
            continue
        cx, bus = frame.x + frame.w / 2, buses[rows.index(frame.y)]
        parts.append(
            f'<line x1="{cx:.1f}" y1="{bus:.1f}" x2="{cx:.1f}" y2="{frame.y:.1f}" class="bus"/>'
        )
        parts.append(_text(cx + 6, frame.y - 4, _stub_label(zone, scene.topology), "stub"))
    return parts


def _legend(topology: str) -> list[str]:
    y = 16
    colour = SPINE_COLOUR if topology == "hierarchy" else PALETTE[0]
    items = [
        ('<circle cx="20" cy="{y}" r="9" class="active" fill="{c}" stroke="{c}"/>', "Active"),
        ('<circle cx="20" cy="{y}" r="9" class="pending" fill="#fff" stroke="{c}"/>', "Pending"),
        (
            '<circle cx="20" cy="{y}" r="9" class="draining" fill="url(#hatch)" stroke="{c}"/>',
            "Draining",
        ),
    ]
    note = (
        "number in a circle: clients it serves · same colour: shared cluster ID (grey: unique)"
        " · bands: groups with their RRs"
    )
    if topology == "hierarchy":
        items.append(
            (
                '<circle cx="20" cy="{y}" r="9" class="active" fill="{c}" stroke="{c}"/>'
                '<circle cx="20" cy="{y}" r="13" class="spine" stroke="{c}"/>',
                "spine RR",
            )
        )
        items.append(
            (
                '<rect x="8" y="{y0}" width="26" height="18" rx="3" class="tile"/>'
                '<circle cx="15" cy="{y}" r="4" class="active" fill="{r}" stroke="{r}"/>'
                '<circle cx="27" cy="{y}" r="4" class="active" fill="{r}" stroke="{r}"/>',
                "a rack, its RRs",
            )
        )
        note = (
            "number in a circle: clients it serves · a rack's two RRs share its cluster ID"
            " · hover a dot or tile for names; the Zones table lists every RR"
        )
    parts = []
    for i, (shape, label) in enumerate(items):
        dx = i * 120
        drawn = shape.format(y=y, y0=y - 9, c=colour, r=RACK_COLOUR)
        parts.append(f'<g transform="translate({dx},0)">' + drawn + "</g>")
        parts.append(_text(dx + 38, y + 4, label, "legend"))
    if len(items) > 4:  # no room beside the items: the note goes below them
        parts.append(_text(8, y + 28, note, "legend"))
    else:
        parts.append(_text(len(items) * 120 + 20, y + 4, note, "legend"))
    return parts


SVG_STYLE = """
text{font-family:"DejaVu Sans","Liberation Sans",Arial,sans-serif;fill:#1a202c}
.zbox{fill:#f7f9fb;stroke:#a0aec0;stroke-width:1.2}
text.zone{font-size:15px;font-weight:bold}.counts{font-size:11.5px;fill:#4a5568}
.rr{font-size:11px}.cid{font-size:10px;fill:#4a5568}.cap{font-size:10px;fill:#744210}
.active{stroke-width:2}.pending{stroke-width:2.5;stroke-dasharray:4 3}
.draining{stroke-width:2;stroke-dasharray:2 2}.spine{fill:none;stroke-width:2}
.count-active{font-size:12px;font-weight:bold;fill:#fff}
.count-pending,.count-draining{font-size:12px;font-weight:bold;fill:#1a202c}
.band{fill-opacity:0.12}.grp{font-size:11px}
.bus{stroke:#4a5568;stroke-width:2.5;fill:none}.bus-label{font-size:13px;font-weight:bold}
.stub{font-size:11px;fill:#4a5568}.legend{font-size:12px;fill:#2d3748}
.section{font-size:11px;font-weight:bold;fill:#4a5568}
.tile{fill:#fffaf0;stroke:#dd6b20;stroke-width:1}.tile-name{font-size:11px;font-weight:bold}
"""

DEFS = (
    '<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
    'patternTransform="rotate(45)"><rect width="6" height="6" fill="#edf2f7"/>'
    '<line x1="0" y1="0" x2="0" y2="6" stroke="#a0aec0" stroke-width="3"/></pattern></defs>'
)


def _loose_box(scene: Scene, y: float) -> tuple[list[str], float]:
    """The groups that serve no drawn zone (the spine's clients, say), in a full-width box."""
    if not scene.loose_groups:
        return [], y
    width = WIDTH - BUS_X - 18 - MARGIN
    lines = sum(len(lines) for _, lines in band_lines(scene.loose_groups, width - 16, scene.domain))
    height = 34 + lines * BAND_LINE_H
    x = BUS_X + 18
    parts = [
        f'<rect x="{x}" y="{y:.1f}" width="{width:.1f}" height="{height}" rx="8" class="zbox"/>',
        _text(x + 10, y + 20, "groups serving the whole cluster", "zone"),
    ]
    parts += _bands(scene.loose_groups, x + 8, y + 28, width - 16, scene)
    return parts, y + height + 10


def render_svg(scene: Scene) -> str:
    if not scene.zones:
        return '<p class="summary">No zones and no route reflectors to draw.</p>'
    frames, bottom = place_zones(scene.zones, scene.domain, scene.topology)
    parts = [*_legend(scene.topology), *_backbone(scene, frames)]
    for zone, frame in zip(scene.zones, frames, strict=True):
        parts += _zone_box(zone, frame, scene)
    loose, bottom = _loose_box(scene, bottom + 16)
    parts += loose
    height = math.ceil(bottom + 8)
    return (
        f'<svg width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" role="img" aria-label="route reflector topology">'
        f"<style>{SVG_STYLE}</style>{DEFS}" + "\n".join(parts) + "</svg>"
    )
