"""A self-contained HTML page (inline CSS and SVG) picturing a plan: zones, RRs, groups, verdict."""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hooks.calico import GROUP_LABEL, REFLECTOR_LABEL, label_value
from hooks.paths import PathReport, figure_text
from hooks.planner import PlanResult, reflector_entries
from hooks.selectors import SelectorError, parse_selector
from hooks.sessions import nodes_from_objects
from hooks.verify import VerifyReport, verify

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
NEUTRAL = "#5b6b7c"  # RRs whose cluster ID nobody else shares
SPINE_COLOUR = "#2b6cb0"
RACK_COLOUR = "#c05621"  # every rack: a tile shows which RRs share a rack's ID, not a colour
PALETTE = (
    "#2b6cb0",
    "#c05621",
    "#2f855a",
    "#9b2c2c",
    "#6b46c1",
    "#b83280",
    "#2c7a7b",
    "#975a16",
    "#1a4971",
    "#434190",
)
CSS = """
body{font-family:"DejaVu Sans","Liberation Sans",Arial,sans-serif;margin:16px;color:#1a202c;
background:#fff}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:20px 0 6px}
p.summary{margin:0 0 10px;color:#4a5568}
svg{max-width:100%;height:auto;display:block}
table{border-collapse:collapse;font-size:13px}
th,td{border:1px solid #cbd5e0;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#edf2f7}td.num{text-align:right}
.verdict{display:inline-block;padding:4px 10px;border-radius:4px;font-weight:bold;color:#fff}
.ok{background:#2f855a}.bad{background:#c53030}
ul.examples{margin:4px 0;font-size:13px;color:#742a2a}
p.note{font-size:12px;color:#4a5568;margin:4px 0}
"""


# --- what the picture shows ------------------------------------------------------------------


@dataclass(frozen=True)
class _Reflector:
    node: str
    zone: str
    cluster_id: str
    state: str
    role: str
    serves: str | None
    clients: int


@dataclass(frozen=True)
class _Group:
    name: str
    zone: str
    reflectors: tuple[str, ...]
    clients: int
    rack: str | None = None


@dataclass(frozen=True)
class _Zone:
    name: str
    counts: Mapping[str, int]
    reflectors: tuple[_Reflector, ...]
    groups: tuple[_Group, ...]


@dataclass(frozen=True)
class _Scene:
    topology: str
    zones: tuple[_Zone, ...]
    loose_groups: tuple[_Group, ...]  # groups serving no zone drawn here (e.g. the spine)
    colours: Mapping[str, str]  # cluster ID → fill
    rr_sessions: int
    domain: str  # the DNS suffix every RR name shares, left out of the drawing


def _common_domain(names: Sequence[str]) -> str:
    """The longest `.suffix` that all names share (`.eu-west-1.compute.internal`), if any."""
    if len(names) < 2:
        return ""
    first = names[0]
    for i, char in enumerate(first):
        if char == "." and all(n.endswith(first[i:]) and len(n) > len(first) - i for n in names):
            return first[i:]
    return ""


def _short(name: str, domain: str) -> str:
    return name[: len(name) - len(domain)] if domain and name.endswith(domain) else name


def _clients_by_group(result: PlanResult, groups: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Clients per group name: non-RR nodes whose group label names the group."""
    rr_names = {rr["node"] for rr in result.status.get("routeReflectors", [])}
    by_label: dict[str, str] = {}
    for group in groups:
        by_label.setdefault(group["name"], group["name"])
        by_label.setdefault(label_value(group["name"]), group["name"])
    counts = dict.fromkeys((g["name"] for g in groups), 0)
    for node in result.nodes:
        meta = node.get("metadata", {})
        labels = meta.get("labels") or {}
        if meta.get("name") in rr_names or REFLECTOR_LABEL in labels:
            continue
        named = by_label.get(labels.get(GROUP_LABEL, ""))
        if named is not None:
            counts[named] += 1
    return counts


def _natural(text: str) -> tuple[tuple[int, int, str], ...]:
    """A sort key that puts g-2 before g-10; ties fall back to the text itself."""
    parts = re.split(r"(\d+)", text)
    return (*((1, int(p), "") if p.isdigit() else (0, 0, p) for p in parts), (2, 0, text))


def _reflector(raw: Mapping[str, Any], groups: Iterable[_Group]) -> _Reflector:
    clients = sum(g.clients for g in groups if raw["node"] in g.reflectors)
    return _Reflector(
        node=str(raw["node"]),
        zone=str(raw.get("zone", "")),
        cluster_id=str(raw.get("clusterID", "")),
        state=str(raw.get("state", "Active")),
        role=str(raw.get("role", "")),
        serves=None if raw.get("serves") is None else str(raw["serves"]),
        clients=clients,
    )


def _colours(reflectors: Iterable[_Reflector], topology: str) -> dict[str, str]:
    """A palette colour per cluster ID shared by two or more RRs, in drawing order; in hierarchy
    one colour for the spine and one for every rack (hundreds of racks would repeat a palette,
    and look as if they shared IDs)."""
    seen: dict[str, int] = {}
    if topology == "hierarchy":
        return {
            rr.cluster_id: SPINE_COLOUR if rr.role == "spine" else RACK_COLOUR
            for rr in reflectors
            if rr.role in ("spine", "rack")
        }
    for rr in reflectors:
        seen[rr.cluster_id] = seen.get(rr.cluster_id, 0) + 1
    shared = [cid for cid, count in seen.items() if count > 1]
    return {cid: PALETTE[i % len(PALETTE)] for i, cid in enumerate(shared)}


def _drawing_order(rr: _Reflector) -> tuple[int, str, str]:
    return (0 if rr.role == "spine" else 1, rr.serves or "", rr.node)


def _zones(
    status: Mapping[str, Any], rrs: Sequence[_Reflector], groups: Sequence[_Group]
) -> list[_Zone]:
    raw = {str(z["name"]): z for z in status.get("zones", [])}
    names = sorted(set(raw) | {rr.zone for rr in rrs})
    keys = ("nodes", "ready", "eligible", "demand", "expected")
    return [
        _Zone(
            name=name,
            counts={k: int(raw.get(name, {}).get(k, 0)) for k in keys},
            reflectors=tuple(sorted((rr for rr in rrs if rr.zone == name), key=_drawing_order)),
            groups=tuple(g for g in groups if g.zone == name),
        )
        for name in names
    ]


def _scene(result: PlanResult) -> _Scene:
    status = result.status
    raw_groups = sorted(status.get("groups", []), key=lambda g: _natural(str(g["name"])))
    clients = _clients_by_group(result, raw_groups)
    groups = [
        _Group(
            str(g["name"]),
            str(g.get("zone", "")),
            tuple(g["reflectors"]),
            clients[g["name"]],
            None if g.get("rack") is None else str(g["rack"]),
        )
        for g in raw_groups
    ]
    rrs = sorted(
        (_reflector(rr, groups) for rr in status.get("routeReflectors", [])),
        key=lambda rr: rr.node,
    )
    zones = _zones(status, rrs, groups)
    drawn = {z.name for z in zones}
    return _Scene(
        topology=str(status.get("topology", "?")),
        zones=tuple(zones),
        loose_groups=tuple(g for g in groups if g.zone not in drawn),
        colours=_colours((rr for z in zones for rr in z.reflectors), str(status.get("topology"))),
        rr_sessions=_reflector_sessions(result, {rr.node for rr in rrs}),
        domain=_common_domain([rr.node for rr in rrs]),
    )


def _reflector_sessions(result: PlanResult, rr_names: set[str]) -> int:
    """RR↔RR BGP sessions the BGPPeers make (each unordered pair once)."""
    labels = {n.name: n.labels for n in nodes_from_objects(result.nodes) if n.name in rr_names}
    pairs: set[tuple[str, str]] = set()
    for peer in result.bgp_peers:
        spec = peer.get("spec", {})
        try:
            left = parse_selector(str(spec.get("nodeSelector", "")))
            right = parse_selector(str(spec["peerSelector"]))
        except (KeyError, SelectorError):
            continue
        ones = [n for n, lab in labels.items() if left.matches(lab)]
        others = [n for n, lab in labels.items() if right.matches(lab)]
        pairs.update((min(a, b), max(a, b)) for a in ones for b in others if a != b)
    return len(pairs)


# --- text helpers ----------------------------------------------------------------------------


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _zone_label(name: str) -> str:
    return name or '""'


def _fit(text: str, width: float, size: float) -> str:
    """`text` shortened in the middle (names differ at the end) to fit `width` pixels."""
    room = max(4, int(width / (size * CHAR_W)))
    if len(text) <= room:
        return text
    head = (room - 1) // 2
    return text[:head] + "…" + text[len(text) - (room - 1 - head) :]


def _wrap(words: Sequence[str], width: float, size: float) -> list[str]:
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
    return [_fit(text, width, size) for text in lines]


def _text(x: float, y: float, text: str, cls: str, anchor: str = "start") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" class="{cls}" text-anchor="{anchor}">{_e(text)}</text>'


# --- layout ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Frame:
    x: float
    y: float
    w: float
    h: float


def _columns(count: int) -> int:
    return {1: 1, 2: 2, 4: 2}.get(count, 3)


def _per_row(width: float) -> int:
    return max(1, int((width - 16) // CELL_W))


def _group_text(group: _Group, domain: str) -> list[str]:
    noun = "client" if group.clients == 1 else "clients"
    names = [_short(rr, domain) for rr in group.reflectors]
    return [f"{group.name} · {group.clients} {noun}:", *(f"{n}," for n in names[:-1]), *names[-1:]]


def _band(groups: Sequence[_Group], width: float, domain: str) -> list[tuple[_Group, list[str]]]:
    """Each group with its text wrapped to a band `width` pixels wide."""
    return [(g, _wrap(_group_text(g, domain), width - 16, 11)) for g in groups]


def _counts_lines(zone: _Zone, width: float) -> list[str]:
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


def _header_h(zone: _Zone, width: float) -> float:
    return HEADER_TOP + len(_counts_lines(zone, width)) * COUNTS_LINE_H + 12


@dataclass(frozen=True)
class _Rack:
    name: str
    label: str  # the rack name without its zone's prefix
    reflectors: tuple[_Reflector, ...]
    clients: int


def _racks(zone: _Zone) -> list[_Rack]:
    """The zone's rack RRs, grouped by the rack they serve, in natural rack order."""
    by_rack: dict[str, list[_Reflector]] = {}
    for rr in zone.reflectors:
        if rr.role == "rack":
            by_rack.setdefault(rr.serves or "", []).append(rr)
    clients = {g.rack: g.clients for g in zone.groups if g.rack is not None}
    prefix = f"{zone.name}-" if zone.name else ""
    return [
        _Rack(
            rack,
            rack[len(prefix) :] if prefix and rack.startswith(prefix) and rack != prefix else rack,
            tuple(sorted(by_rack[rack], key=lambda rr: rr.node)),
            clients.get(rack, 0),
        )
        for rack in sorted(by_rack, key=_natural)
    ]


def _tiles_per_row(width: float) -> int:
    return max(1, int((width - 16) // TILE_W))


def _cells(zone: _Zone, topology: str) -> tuple[_Reflector, ...]:
    """The RRs drawn as full cells: all of them, except rack RRs in hierarchy (tiles)."""
    if topology == "hierarchy":
        return tuple(rr for rr in zone.reflectors if rr.role != "rack")
    return zone.reflectors


def _banded(zone: _Zone, topology: str) -> tuple[_Group, ...]:
    """Groups listed in bands: racks in hierarchy are the tiles already."""
    if topology == "hierarchy":
        return tuple(g for g in zone.groups if g.rack is None)
    return zone.groups


def _body_h(zone: _Zone, width: float, topology: str) -> float:
    """Height of the RR cells (and in hierarchy the spine and rack sections) of a zone box."""
    cells = _cells(zone, topology)
    rows = (
        math.ceil(len(cells) / _per_row(width)) if cells else (0 if topology == "hierarchy" else 1)
    )
    if topology != "hierarchy":
        return rows * CELL_H
    racks = _racks(zone)
    tiles = math.ceil(len(racks) / _tiles_per_row(width)) if racks else 0
    height = (SECTION_H + rows * CELL_H if cells else 0) + (
        SECTION_H + tiles * (TILE_H + 6) if racks else 0
    )
    return height or CELL_H


def _zone_height(zone: _Zone, width: float, domain: str, topology: str) -> float:
    groups = _banded(zone, topology)
    band = sum(len(lines) for _, lines in _band(groups, width - 16, domain)) * BAND_LINE_H
    return _header_h(zone, width) + _body_h(zone, width, topology) + (band + 14 if band else 0) + 6


def _layout(zones: Sequence[_Zone], domain: str, topology: str) -> tuple[list[_Frame], float]:
    """Zone boxes on a grid (rows as tall as their tallest box) and the height they take."""
    cols = _columns(len(zones))
    left = BUS_X + 18
    width = (WIDTH - left - MARGIN - (cols - 1) * GAP / 2) / cols
    frames: list[_Frame] = []
    y: float = LEGEND_H + GAP
    for start in range(0, len(zones), cols):
        row = zones[start : start + cols]
        height = max(_zone_height(z, width, domain, topology) for z in row)
        for i in range(len(row)):
            frames.append(_Frame(left + i * (width + GAP / 2), y, width, height))
        y += height + GAP
    return frames, y - GAP


# --- drawing ---------------------------------------------------------------------------------


def _circle(cx: float, cy: float, rr: _Reflector, colour: str) -> list[str]:
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


def _caption(rr: _Reflector) -> str:
    words = []
    if rr.role == "spine":
        words.append("spine")
    elif rr.role == "rack":
        words.append(f"rack {rr.serves}")
    elif rr.serves is not None:
        words.append(f"serves {_zone_label(rr.serves)}")
    if rr.state != "Active":
        words.append(rr.state)
    return " · ".join(words)


def _reflector_cell(frame: _Frame, rr: _Reflector, colour: str, domain: str) -> str:
    cx, cy = frame.x + frame.w / 2, frame.y + RADIUS + 6
    parts = [
        f"<g><title>{_e(rr.node)} ({_e(rr.cluster_id)}, {_e(rr.state)}, "
        f"{rr.clients} clients)</title>"
    ]
    parts += _circle(cx, cy, rr, colour)
    parts.append(
        _text(cx, cy + RADIUS + 16, _fit(_short(rr.node, domain), frame.w - 6, 11), "rr", "middle")
    )
    parts.append(_text(cx, cy + RADIUS + 29, rr.cluster_id, "cid", "middle"))
    caption = _caption(rr)
    if caption:
        parts.append(_text(cx, cy + RADIUS + 41, _fit(caption, frame.w - 6, 10), "cap", "middle"))
    parts.append("</g>")
    return "".join(parts)


def _zone_header(zone: _Zone, frame: _Frame) -> list[str]:
    parts = [
        _text(frame.x + 10, frame.y + 20, _fit(_zone_label(zone.name), frame.w - 20, 15), "zone")
    ]
    for i, line in enumerate(_counts_lines(zone, frame.w)):
        y = frame.y + HEADER_TOP + 12 + i * COUNTS_LINE_H
        parts.append(_text(frame.x + 10, y, _fit(line, frame.w - 20, 11.5), "counts"))
    return parts


def _dot(cx: float, cy: float, rr: _Reflector, colour: str) -> str:
    cls = {"Pending": "pending", "Draining": "draining"}.get(rr.state, "active")
    fill = {"pending": "#fff", "draining": "url(#hatch)"}.get(cls, colour)
    return (
        f"<g><title>{_e(rr.node)} ({_e(rr.cluster_id)}, {_e(rr.state)}, {rr.clients} clients)"
        f'</title><circle cx="{cx:.1f}" cy="{cy:.1f}" r="{DOT}" class="{cls}" fill="{fill}" '
        f'stroke="{colour}"/></g>'
    )


def _rack_tile(frame: _Frame, rack: _Rack, scene: _Scene) -> list[str]:
    """A rack as one tile: its name and clients, its RRs as dots, the cluster ID they share."""
    ids = sorted({rr.cluster_id for rr in rack.reflectors})
    noun = "client" if rack.clients == 1 else "clients"
    parts = [
        f'<g class="rack"><title>rack {_e(rack.name)}: '
        f"{_e(', '.join(rr.node for rr in rack.reflectors))} ({_e(', '.join(ids))})</title>",
        f'<rect x="{frame.x:.1f}" y="{frame.y:.1f}" width="{frame.w - 6:.1f}" '
        f'height="{frame.h:.1f}" rx="4" class="tile"/>',
        _text(frame.x + 6, frame.y + 14, _fit(rack.label, frame.w - 14, 11), "tile-name"),
        "</g>",
    ]
    for i, rr in enumerate(rack.reflectors):
        colour = scene.colours.get(rr.cluster_id, NEUTRAL)
        parts.append(_dot(frame.x + 6 + DOT + i * (2 * DOT + 5), frame.y + 28, rr, colour))
    after = frame.x + 6 + len(rack.reflectors) * (2 * DOT + 5) + 2
    parts.append(
        _text(after, frame.y + 32, _fit(", ".join(ids), frame.x + frame.w - after, 10), "cid")
    )
    parts.append(
        _text(frame.x + 6, frame.y + 45, _fit(f"{rack.clients} {noun}", frame.w - 14, 10), "cap")
    )
    return parts


def _bands(groups: Sequence[_Group], x: float, y: float, width: float, scene: _Scene) -> list[str]:
    parts = []
    for group, lines in _band(groups, width, scene.domain):
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


def _group_colour(group: _Group, scene: _Scene) -> str:
    by_node = {rr.node: rr.cluster_id for z in scene.zones for rr in z.reflectors}
    ids = {by_node.get(rr, "") for rr in group.reflectors}
    return scene.colours.get(ids.pop(), NEUTRAL) if len(ids) == 1 else NEUTRAL


def _zone_box(zone: _Zone, frame: _Frame, scene: _Scene) -> list[str]:
    parts = [
        f'<g class="zone-box"><rect x="{frame.x:.1f}" y="{frame.y:.1f}" '
        f'width="{frame.w:.1f}" height="{frame.h:.1f}" rx="8" class="zbox"/>'
    ]
    parts += _zone_header(zone, frame)
    top = frame.y + _header_h(zone, frame.w)
    hierarchy = scene.topology == "hierarchy"
    cells = _cells(zone, scene.topology)
    y = top
    if hierarchy and cells:
        parts.append(_text(frame.x + 10, y + 12, f"spine · {len(cells)} RR", "section"))
        y += SECTION_H
    per_row = _per_row(frame.w)
    cell_w = (frame.w - 16) / per_row
    for i, rr in enumerate(cells):
        row, col = divmod(i, per_row)
        cell = _Frame(frame.x + 8 + col * cell_w, y + row * CELL_H, cell_w, CELL_H)
        colour = scene.colours.get(rr.cluster_id, NEUTRAL)
        parts.append(_reflector_cell(cell, rr, colour, scene.domain))
    y += math.ceil(len(cells) / per_row) * CELL_H
    racks = _racks(zone) if hierarchy else []
    if racks:
        rrs = sum(len(r.reflectors) for r in racks)
        parts.append(
            _text(frame.x + 10, y + 12, f"racks · {len(racks)} racks, {rrs} rack RRs", "section")
        )
        y += SECTION_H
        tiles = _tiles_per_row(frame.w)
        tile_w = (frame.w - 16) / tiles
        for i, rack in enumerate(racks):
            row, col = divmod(i, tiles)
            tile = _Frame(frame.x + 8 + col * tile_w, y + row * (TILE_H + 6), tile_w, TILE_H)
            parts += _rack_tile(tile, rack, scene)
    if not zone.reflectors:
        parts.append(_text(frame.x + 10, top + 30, "no route reflector here", "cap"))
    band_y = top + _body_h(zone, frame.w, scene.topology) + 8
    parts += _bands(_banded(zone, scene.topology), frame.x + 8, band_y, frame.w - 16, scene)
    parts.append("</g>")
    return parts


def _backbone_caption(scene: _Scene) -> str:
    rrs = [rr for z in scene.zones for rr in z.reflectors]
    if scene.topology == "hierarchy":
        spines = sum(1 for rr in rrs if rr.role == "spine")
        shape = f"spine mesh of {spines} spine RRs, every rack RR ↔ every spine RR"
    else:
        shape = f"full mesh of {len(rrs)} RRs"
    note = f" · names shown without {scene.domain}" if scene.domain else ""
    return f"RR↔RR peering: {shape} · {scene.rr_sessions} sessions{note}"


def _stub_label(zone: _Zone, topology: str) -> str:
    if topology == "hierarchy":
        spines = sum(1 for rr in zone.reflectors if rr.role == "spine")
        return f"{spines} spine · {len(zone.reflectors) - spines} rack"
    return f"{len(zone.reflectors)} RRs"


def _backbone(scene: _Scene, frames: Sequence[_Frame]) -> list[str]:
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


def _loose_box(scene: _Scene, y: float) -> tuple[list[str], float]:
    """The groups that serve no drawn zone (the spine's clients, say), in a full-width box."""
    if not scene.loose_groups:
        return [], y
    width = WIDTH - BUS_X - 18 - MARGIN
    lines = sum(len(lines) for _, lines in _band(scene.loose_groups, width - 16, scene.domain))
    height = 34 + lines * BAND_LINE_H
    x = BUS_X + 18
    parts = [
        f'<rect x="{x}" y="{y:.1f}" width="{width:.1f}" height="{height}" rx="8" class="zbox"/>',
        _text(x + 10, y + 20, "groups serving the whole cluster", "zone"),
    ]
    parts += _bands(scene.loose_groups, x + 8, y + 28, width - 16, scene)
    return parts, y + height + 10


def _svg(scene: _Scene) -> str:
    if not scene.zones:
        return '<p class="summary">No zones and no route reflectors to draw.</p>'
    frames, bottom = _layout(scene.zones, scene.domain, scene.topology)
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


# --- tables ----------------------------------------------------------------------------------


def _zone_table(result: PlanResult) -> str:
    """The rows of `format_table`, as HTML, every RR listed (spine, rack, cluster ID)."""
    head = ("ZONE", "NODES", "READY", "ELIGIBLE", "DEMAND", "RRS", "ROUTE REFLECTORS")
    rows = ["<tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr>"]
    for zone in result.status.get("zones", []):
        cells = [f"<td>{_e(_zone_label(zone['name']))}</td>"]
        cells += [
            f'<td class="num">{_e(zone[k])}</td>'
            for k in ("nodes", "ready", "eligible", "demand", "expected")
        ]
        entries = reflector_entries(result.status, zone["name"])
        listed = "<br>".join(
            (f"<strong>{_e(what)}</strong>: " if what else "") + _e(", ".join(names))
            for what, names in entries
        )
        cells.append(f"<td>{listed or '-'}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return '<table class="zones">' + "\n".join(rows) + "</table>"


def _verify(result: PlanResult) -> VerifyReport | str:
    try:
        return verify(nodes_from_objects(result.nodes), result.bgp_peers, mesh=False, failures=True)
    except ValueError as error:
        return str(error)


def _yes_no(value: bool | None) -> str:
    return {True: "yes", False: "NO", None: "not checked"}[value]


def _verdict(result: PlanResult) -> str:
    report = _verify(result)
    if isinstance(report, str):
        return f'<p><span class="verdict bad">verify could not run</span> {_e(report)}</p>'
    badge = (
        '<span class="verdict ok">OK</span>'
        if report.ok
        else ('<span class="verdict bad">FAILED</span>')
    )
    figures = (
        ("every node reaches every other node", _yes_no(report.reachable)),
        ("tolerates any single RR failure", _yes_no(report.single_failure_ok)),
        ("BGPPeers", report.bgp_peers),
        ("sessions per RR (max)", report.sessions_per_rr_max),
        ("clients per RR (max)", report.clients_per_rr_max),
        ("clients per RR (mean)", report.clients_per_rr_mean),
    )
    note = "clients per RR counts every BGP peer of an RR with another cluster ID, RRs included"
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in figures)
    examples = [*report.unreachable_examples, *report.single_failure_examples]
    listing = "".join(f"<li>{_e(x)}</li>" for x in examples)
    return (
        f"<p>{badge} route propagation simulated on {report.nodes} nodes</p>"
        f'<table class="verify">{rows}</table><p class="note">{_e(note)}</p>'
        + (f'<ul class="examples">{listing}</ul>' if listing else "")
    )


def _paths(result: PlanResult) -> str:
    try:
        report = result.paths()
    except ValueError as error:
        return f'<p><span class="verdict bad">the route count could not run</span> {_e(error)}</p>'
    x = report.exploded

    def figure(value: float) -> str:
        return figure_text(value, x)

    figures: tuple[tuple[str, str], ...] = (
        ("paths per remote prefix at a client (max)", figure(report.paths_client_max)),
        ("paths per remote prefix at a client (mean)", figure(report.paths_client_mean)),
        ("paths per remote prefix at an RR (max)", figure(report.paths_rr_max)),
        ("paths per remote prefix at an RR (mean)", figure(report.paths_rr_mean)),
        ("routes per node (max)", figure(report.routes_per_node_max)),
        ("routes per node (mean)", figure(report.routes_per_node_mean)),
        ("sessions per client (max / mean)", _sessions(report, "client")),
        ("sessions per RR (max / mean)", _sessions(report, "rr")),
    )
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in figures)
    verdict = (
        '<p><span class="verdict bad">EXPLODES</span> the count was stopped; every figure is a'
        " lower bound</p>"
        if x
        else ""
    )
    note = (
        "BIRD with add paths on (as Calico configures it) keeps every distinct path it receives:"
        " one route per path per session; each node originates one prefix"
    )
    return f'{verdict}<table class="paths">{rows}</table><p class="note">{_e(note)}</p>'


def _sessions(report: PathReport, role: str) -> str:
    if role == "client":
        return f"{report.sessions_per_client_max} / {report.sessions_per_client_mean}"
    return f"{report.sessions_per_rr_max} / {report.sessions_per_rr_mean}"


def _summary(result: PlanResult) -> str:
    status = result.status
    ready = {c["type"]: c for c in status.get("conditions", [])}.get("Ready", {})
    text = (
        f"{status.get('reflectors', 0)} route reflectors · {len(result.bgp_peers)} BGPPeers"
        f" · Ready={ready.get('status', '?')} ({ready.get('reason', '')})"
    )
    if ready.get("status") != "True" and ready.get("message"):
        text += f" — {ready['message']}"
    return f'<p class="summary">{_e(text)}</p>'


def render_html(result: PlanResult) -> str:
    """The plan as one HTML page: the topology drawing, the zone table, the verify verdict."""
    scene = _scene(result)
    title = f"Route reflectors: {scene.topology} topology"
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta http-equiv="Content-Security-Policy" '
            "content=\"default-src 'none'; style-src 'unsafe-inline'\">",
            f"<title>{_e(title)}</title><style>{CSS}</style></head><body>",
            f"<h1>{_e(title)}</h1>",
            _summary(result),
            _svg(scene),
            "<h2>Zones</h2>",
            _zone_table(result),
            "<h2>Verify</h2>",
            _verdict(result),
            "<h2>Routing tables (add paths)</h2>",
            _paths(result),
            "</body></html>",
            "",
        ]
    )
