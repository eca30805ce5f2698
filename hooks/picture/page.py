"""The HTML page around the picture: summary, SVG, zone table, verify verdict, route count."""

from __future__ import annotations

from hooks.offline import PlanResult
from hooks.paths import PathReport, figure_text
from hooks.picture.scene import build_scene
from hooks.picture.svg import escape, render_svg
from hooks.plan_view import (
    ZONE_HEADER,
    not_ready_message,
    reflector_entries,
    summary_facts,
    zone_cells,
)
from hooks.sessions import nodes_from_objects
from hooks.verify import VerifyReport, verify

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


def _zone_table(result: PlanResult) -> str:
    """The rows of `format_table`, as HTML, every RR listed (spine, rack, cluster ID)."""
    head = (*ZONE_HEADER, "ROUTE REFLECTORS")
    rows = ["<tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr>"]
    status = result.typed_status
    for zone in status.zones:
        label, *counts = zone_cells(zone)
        cells = [f"<td>{escape(label)}</td>"]
        cells += [f'<td class="num">{escape(count)}</td>' for count in counts]
        entries = reflector_entries(status, zone.name)
        listed = "<br>".join(
            (f"<strong>{escape(what)}</strong>: " if what else "") + escape(", ".join(names))
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
        return f'<p><span class="verdict bad">verify could not run</span> {escape(report)}</p>'
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
    rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in figures)
    examples = [*report.unreachable_examples, *report.single_failure_examples]
    listing = "".join(f"<li>{escape(x)}</li>" for x in examples)
    return (
        f"<p>{badge} route propagation simulated on {report.nodes} nodes</p>"
        f'<table class="verify">{rows}</table><p class="note">{escape(note)}</p>'
        + (f'<ul class="examples">{listing}</ul>' if listing else "")
    )


def _paths(result: PlanResult) -> str:
    try:
        report = result.paths()
    except ValueError as error:
        return (
            f'<p><span class="verdict bad">the route count could not run</span> {escape(error)}</p>'
        )
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
    rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in figures)
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
    return f'{verdict}<table class="paths">{rows}</table><p class="note">{escape(note)}</p>'


def _sessions(report: PathReport, role: str) -> str:
    if role == "client":
        return f"{report.sessions_per_client_max} / {report.sessions_per_client_mean}"
    return f"{report.sessions_per_rr_max} / {report.sessions_per_rr_mean}"


def _summary(result: PlanResult) -> str:
    status = result.typed_status
    text = " · ".join(summary_facts(status, len(result.bgp_peers)))
    message = not_ready_message(status)
    if message is not None:
        text += f" — {message}"
    return f'<p class="summary">{escape(text)}</p>'


def render_html(result: PlanResult) -> str:
    """The plan as one HTML page: the topology drawing, the zone table, the verify verdict."""
    scene = build_scene(result)
    title = f"Route reflectors: {scene.topology} topology"
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta http-equiv="Content-Security-Policy" '
            "content=\"default-src 'none'; style-src 'unsafe-inline'\">",
            f"<title>{escape(title)}</title><style>{CSS}</style></head><body>",
            f"<h1>{escape(title)}</h1>",
            _summary(result),
            render_svg(scene),
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
