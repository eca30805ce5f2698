"""The HTML picture of a plan: self-contained, complete, escaped, stable, and drawn by a browser."""

from __future__ import annotations

import copy
import html
import os
import re
import struct
import subprocess
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from nodes import kube_node

from hooks import offline
from hooks.calico import GROUP_LABEL, label_value
from hooks.offline import PlanResult, run_plan
from hooks.paths import PathReport, count_paths
from hooks.picture import render_html
from hooks.picture.layout import RADIUS
from hooks.picture.scene import RACK_COLOUR, SPINE_COLOUR
from hooks.plan_table import TABLE_WIDTH, format_table

NOW = datetime(2024, 5, 1, tzinfo=UTC)
ZONE_LABEL = "topology.kubernetes.io/zone"
RACK_LABEL = "example.com/rack"
ZONES = ("eu-west-1a", "eu-west-1b", "<b>&")
CHROMIUM = Path("/usr/bin/chromium")
INSTALL = "apt-get install -y --no-install-recommends chromium fonts-dejavu-core"


def node(name: str, zone: str, rack: str) -> dict[str, Any]:
    return kube_node(name, zone, created="2024-01-01T00:00:00Z", labels={RACK_LABEL: rack})


def cluster(per_zone: int = 20) -> list[dict[str, Any]]:
    """60 nodes in three zones (one named `<b>&`), three racks per zone."""
    return [
        node(f"node-{z}-{i:02d}", zone, f"rack-{z}-{i % 3}")
        for z, zone in enumerate(ZONES)
        for i in range(per_zone)
    ]


def plan(topology: str, nodes: list[dict[str, Any]] | None = None) -> PlanResult:
    spec: dict[str, Any] = {"topology": topology, "zoneLabel": ZONE_LABEL, "ratio": 0.1}
    if topology == "hierarchy":
        spec["rackLabel"] = RACK_LABEL
    document = {
        "apiVersion": "route-reflector.dev/v1",
        "kind": "RouteReflectorTopology",
        "metadata": {"name": "default"},
        "spec": spec,
    }
    return run_plan({"items": cluster() if nodes is None else nodes}, document, {}, NOW)


TOPOLOGIES = ("simple", "multi", "hierarchy")
PLANS = {topology: plan(topology) for topology in TOPOLOGIES}
PAGES = {topology: render_html(result) for topology, result in PLANS.items()}


def reflectors(result: PlanResult) -> list[str]:
    return [rr["node"] for rr in result.status["routeReflectors"]]


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_the_page_fetches_nothing_from_anywhere(topology: str) -> None:
    page = PAGES[topology]

    assert "<svg" in page
    for reference in ("http://", "https://", "src=", "@import", "<script", "<link"):
        assert reference not in page
    assert re.findall(r"url\((?!#)", page) == []  # only the in-page hatch pattern


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_every_zone_and_every_reflector_is_named(topology: str) -> None:
    page, result = PAGES[topology], PLANS[topology]

    assert len(reflectors(result)) >= 6
    for zone in ("eu-west-1a", "eu-west-1b", "&lt;b&gt;&amp;"):
        assert f">{zone}</text>" in page
    for name in reflectors(result):
        assert name in page


def test_text_from_the_cluster_is_escaped() -> None:
    page = PAGES["simple"]

    assert "&lt;b&gt;&amp;" in page
    assert "<b>" not in page


def test_the_same_plan_gives_the_same_bytes_whatever_the_node_order() -> None:
    shuffled = plan("multi", list(reversed(cluster())))

    assert render_html(shuffled) == PAGES["multi"]
    assert render_html(PLANS["multi"]) == PAGES["multi"]


GOLDEN_PAGES = Path(__file__).resolve().parent / "fixtures" / "picture"


@pytest.mark.parametrize("topology", ["multi", "hierarchy"])
def test_a_small_plan_draws_the_stored_page_byte_for_byte(topology: str) -> None:
    """The page as rendered before `picture` became a package; UPDATE_GOLDEN=1 rewrites it when the
    drawing changes on purpose (review the diff in a browser)."""
    page = render_html(plan(topology, cluster(4)))
    stored = GOLDEN_PAGES / f"{topology}.html.golden"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        stored.write_text(page, encoding="utf-8")

    assert page == stored.read_text(encoding="utf-8")


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_each_reflector_shows_the_clients_of_its_groups(topology: str) -> None:
    result = PLANS[topology]
    groups = {label_value(g["name"]): g["reflectors"] for g in result.status["groups"]}
    rr_names = set(reflectors(result))
    expected = dict.fromkeys(rr_names, 0)
    for item in result.nodes:
        group = item["metadata"]["labels"].get(GROUP_LABEL)
        if item["metadata"]["name"] not in rr_names and group in groups:
            for rr in groups[group]:
                expected[rr] += 1

    shown = {
        name: int(count)
        for name, count in re.findall(
            r"<title>([^ ]+) \([^)]*, (\d+) clients\)</title>", PAGES[topology]
        )
    }

    assert shown == expected
    assert sum(expected.values()) > 0


def test_groups_and_racks_are_listed_with_their_reflectors() -> None:
    for group in PLANS["multi"].status["groups"]:
        assert f"{html.escape(group['name'])} · " in PAGES["multi"]
    for group in PLANS["hierarchy"].status["groups"]:
        if "rack" in group:  # a tile naming the rack and its RRs
            names = ", ".join(sorted(group["reflectors"]))
            assert f"<title>rack {html.escape(group['rack'])}: {names} (" in PAGES["hierarchy"]
        else:
            assert f"{html.escape(group['name'])} · " in PAGES["hierarchy"]
    assert "spine" in PAGES["hierarchy"]
    assert "every rack RR ↔ every spine RR" in PAGES["hierarchy"]
    assert "full mesh of" in PAGES["multi"]


def test_pending_and_draining_reflectors_are_drawn_apart_from_active_ones() -> None:
    result = copy.deepcopy(PLANS["simple"])
    first, second = result.status["routeReflectors"][:2]
    first["state"], second["state"] = "Draining", "Pending"

    page = render_html(result)

    assert 'class="draining" fill="url(#hatch)"' in page
    assert 'class="pending" fill="#fff"' in page
    assert f"<title>{first['node']} ({first['clusterID']}, Draining," in page


def test_the_verdict_and_the_zone_table_are_below_the_drawing() -> None:
    page = PAGES["simple"]

    assert (
        page.index("</svg>")
        < page.index('<table class="zones">')
        < page.index('<span class="verdict')
    )
    assert '<span class="verdict ok">OK</span>' in page
    assert "<tr><th>tolerates any single RR failure</th><td>yes</td></tr>" in page
    assert "<td>&lt;b&gt;&amp;</td>" in page


def test_the_add_path_route_counts_follow_the_verdict() -> None:
    page = PAGES["multi"]
    report = PLANS["multi"].paths()

    assert page.index('<table class="verify">') < page.index('<table class="paths">')
    assert (
        "<tr><th>paths per remote prefix at a client (max)</th>"
        f"<td>{report.paths_client_max:,}</td></tr>" in page
    )
    assert f"<tr><th>routes per node (max)</th><td>{report.routes_per_node_max:,}</td></tr>" in page
    # one path per RR of a client's group: planes keep chains of distinct IDs to one hub
    assert 0 < report.paths_client_max <= report.sessions_per_client_max


# --- in a real browser --------------------------------------------------------------------------


def chromium() -> Path:
    if CHROMIUM.exists():
        return CHROMIUM
    if os.environ.get("RR_SKIP_BROWSER") == "1":
        pytest.skip(f"{CHROMIUM} missing and RR_SKIP_BROWSER=1")
    pytest.fail(f"{CHROMIUM} is missing: run `{INSTALL}` (or set RR_SKIP_BROWSER=1 to skip)")


def run_chromium(tmp: Path, profile: str, *args: str) -> str:
    command = [
        str(chromium()),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp / profile}",
        *args,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def png_pixels(data: bytes) -> Iterator[bytes]:
    """The pixels of an 8-bit RGB or RGBA PNG, decoded with the standard library only."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    offset, idat, header = 8, bytearray(), b""
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind, body = data[offset + 4 : offset + 8], data[offset + 8 : offset + 8 + length]
        header = body if kind == b"IHDR" else header
        idat += body if kind == b"IDAT" else b""
        offset += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour in (2, 6) and interlace == 0
    size = 4 if colour == 6 else 3
    raw, stride = zlib.decompress(bytes(idat)), width * size
    previous = bytearray(stride)
    for row in range(height):
        start = row * (stride + 1)
        line = unfilter(raw[start], bytearray(raw[start + 1 : start + 1 + stride]), previous, size)
        for x in range(0, stride, size):
            yield bytes(line[x : x + 3])
        previous = line


def unfilter(kind: int, line: bytearray, up: bytearray, size: int) -> bytearray:
    if kind == 0:
        return line
    if kind == 2:
        return bytearray((a + b) & 0xFF for a, b in zip(line, up, strict=True))
    for i in range(len(line)):
        left = line[i - size] if i >= size else 0
        corner = up[i - size] if i >= size else 0
        if kind == 1:
            line[i] = (line[i] + left) & 0xFF
        elif kind == 3:
            line[i] = (line[i] + (left + up[i]) // 2) & 0xFF
        else:
            estimate = left + up[i] - corner
            pa, pb, pc = abs(estimate - left), abs(estimate - up[i]), abs(estimate - corner)
            best = left if pa <= pb and pa <= pc else up[i] if pb <= pc else corner
            line[i] = (line[i] + best) & 0xFF
    return line


class SvgText(HTMLParser):
    """Collects the text inside SVG <text> elements."""

    def __init__(self) -> None:
        super().__init__()
        self.depth = 0
        self.texts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "text":
            self.depth += 1
            self.texts.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "text":
            self.depth -= 1

    def handle_data(self, data: str) -> None:
        if self.depth:
            self.texts[-1] += data


@pytest.mark.slow
def test_headless_chromium_draws_the_picture_with_every_zone(tmp_path: Path) -> None:
    page = tmp_path / "plan.html"
    page.write_text(PAGES["hierarchy"], encoding="utf-8")
    screenshot = tmp_path / "plan.png"

    run_chromium(
        tmp_path,
        "shot",
        f"--screenshot={screenshot}",
        "--window-size=1400,1000",
        page.as_uri(),
    )
    dom = run_chromium(tmp_path, "dom", "--dump-dom", page.as_uri())

    assert screenshot.exists()
    colours: set[bytes] = set()
    pixels = ink = 0
    for pixel in png_pixels(screenshot.read_bytes()):
        pixels += 1
        ink += pixel != b"\xff\xff\xff"
        colours.add(pixel)
    assert len(colours) > 10
    assert ink > pixels // 100
    parser = SvgText()
    parser.feed(dom)
    for zone in ZONES:
        assert zone in parser.texts


def test_an_exploding_route_count_is_shown_as_a_lower_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def capped(*args: Any, **kwargs: Any) -> PathReport:
        return count_paths(*args, **kwargs, budget=50)

    monkeypatch.setattr(offline, "count_paths", capped)
    page = render_html(PLANS["multi"])

    assert '<span class="verdict bad">EXPLODES</span>' in page
    assert re.search(r"<th>routes per node \(max\)</th><td>at least [0-9,]+</td>", page)


# --- at scale ---------------------------------------------------------------------------------


def racked_cluster(racks_per_zone: int, per_rack: int = 4) -> list[dict[str, Any]]:
    """Long cloud-style names, `per_rack` nodes in each of `racks_per_zone` racks per zone."""
    return [
        node(f"ip-10-{z}-{r}-{i}.eu-west-1.compute.internal", zone, f"{zone}-rack-{r:03d}")
        for z, zone in enumerate(("eu-west-1a", "eu-west-1b", "eu-west-1c"))
        for r in range(racks_per_zone)
        for i in range(per_rack)
    ]


HIERARCHY_AT_SCALE = plan("hierarchy", racked_cluster(20))
PAGE_AT_SCALE = render_html(HIERARCHY_AT_SCALE)


def test_hierarchy_draws_each_rack_as_one_tile_and_only_the_spine_as_big_circles() -> None:
    rrs = HIERARCHY_AT_SCALE.status["routeReflectors"]
    racks = {rr["serves"] for rr in rrs if rr.get("role") == "rack"}
    spines = [rr for rr in rrs if rr.get("role") == "spine"]
    assert len(racks) == 60 and spines
    assert PAGE_AT_SCALE.count('<g class="rack">') == len(racks)
    assert PAGE_AT_SCALE.count(f'r="{RADIUS}" class="active"') == len(spines)
    height = int(re.findall(r'<svg width="\d+" height="(\d+)"', PAGE_AT_SCALE)[0])
    assert height < 900, height  # 126 RRs: not a wall of circles


def test_hierarchy_colours_say_spine_or_rack_and_never_repeat_a_palette_over_racks() -> None:
    fills = dict(
        re.findall(r"<title>([^ ]+) \(.*?</title><circle [^>]*fill=\"(#\w+)\"", PAGE_AT_SCALE)
    )
    roles = {rr["node"]: rr.get("role") for rr in HIERARCHY_AT_SCALE.status["routeReflectors"]}
    assert {fills[n] for n, role in roles.items() if role == "rack"} == {RACK_COLOUR}
    big = re.findall(r'r="17" class="active" fill="(#\w+)"', PAGE_AT_SCALE)
    assert set(big) == {SPINE_COLOUR}


def test_the_spine_legend_shows_only_for_hierarchy() -> None:
    assert ">spine RR</text>" in PAGES["hierarchy"]
    for topology in ("simple", "multi"):
        assert ">spine RR</text>" not in PAGES[topology]


def test_zone_counts_of_four_digits_are_shown_whole() -> None:
    result = copy.deepcopy(PLANS["multi"])
    for zone in result.status["zones"]:
        zone.update(nodes=12_345, ready=12_001, eligible=11_999, demand=25, expected=25)
    page = render_html(result)
    counts = re.findall(r'class="counts"[^>]*>([^<]*)</text>', page)
    assert counts and not any("…" in line for line in counts), counts
    text = " · ".join(counts)
    for figure in ("12,345 nodes", "12,001 ready", "11,999 eligible", "demand 25"):
        assert text.count(figure) == 3, (figure, counts)


def test_the_table_wraps_at_100_columns_and_marks_spine_and_rack_reflectors() -> None:
    table = format_table(HIERARCHY_AT_SCALE).splitlines()
    assert max(len(line) for line in table) <= TABLE_WIDTH
    zone_a = table[table.index(next(x for x in table if x.startswith("eu-west-1a "))) + 1 :]
    assert zone_a[0].startswith("  spine 224.0.0.1: ")
    assert zone_a[1].startswith("  rack eu-west-1a-rack-000 224.0.0.")
    assert "ip-10-0-0-0.eu-west-1.compute.internal" in zone_a[1]
    more = next(line for line in zone_a if line.startswith("  … "))
    assert more.endswith("-o json or -o html lists every RR")
    assert len(table) < 60  # three zones of 20 racks each, not 126 names on 3 rows
