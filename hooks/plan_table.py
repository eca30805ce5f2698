"""`plan`'s table for a terminal: the summary line, a row of figures per zone with its RRs
wrapped below it, the verify verdict and the route count."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

from hooks.offline import PlanResult
from hooks.paths import PathReport, format_paths
from hooks.plan_view import (
    ZONE_HEADER,
    not_ready_message,
    reflector_entries,
    summary_facts,
    zone_cells,
)
from hooks.verify import VerifyReport
from hooks.wire import TopologyStatusWire

TABLE_WIDTH = 100
MAX_RR_LINES = 12  # per zone in the table; `-o json` and `-o html` list every RR


def _reflector_lines(status: TopologyStatusWire, zone: str) -> list[str]:
    lines: list[str] = []
    entries = reflector_entries(status, zone)
    for index, (what, names) in enumerate(entries):
        text = (f"{what}: " if what else "") + ", ".join(names)
        wrapped = textwrap.wrap(
            text,
            TABLE_WIDTH,
            initial_indent="  ",
            subsequent_indent="      ",
            break_long_words=False,
            break_on_hyphens=False,
        )
        if len(lines) + len(wrapped) > MAX_RR_LINES and index < len(entries) - 1:
            rest = entries[index:]
            count = sum(len(names) for _, names in rest)
            lines.append(f"  … {len(rest)} more ({count} RRs): -o json or -o html lists every RR")
            break
        lines.extend(wrapped)
    return lines


def format_table(result: PlanResult) -> str:
    """The plan for a terminal: a row of figures per zone, its RRs wrapped below it."""
    status = result.typed_status
    lines = []
    facts = summary_facts(status, len(result.bgp_peers))
    lines.append(f"topology {status.topology or '?'}: " + ", ".join(facts))
    message = not_ready_message(status)
    if message is not None:
        lines.append(f"  {message}")
    header = ZONE_HEADER
    zones = status.zones
    rows = [header] + [zone_cells(zone) for zone in zones]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]

    def row_text(row: Sequence[str]) -> str:
        return "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip()

    lines.append(row_text(header) + "  ROUTE REFLECTORS (below each zone)")
    for zone, row in zip(zones, rows[1:], strict=True):
        lines.append(row_text(row))
        lines.extend(_reflector_lines(status, zone.name))
    report = result.extra.get("verify")
    if isinstance(report, VerifyReport):
        tolerant = {True: "yes", False: "NO", None: "not checked"}[report.single_failure_ok]
        lines.append(
            f"BGPPeers {report.bgp_peers}; sessions per RR max {report.sessions_per_rr_max};"
            f" clients per RR max {report.clients_per_rr_max}, mean {report.clients_per_rr_mean}"
        )
        lines.append(
            f"verify: {'OK' if report.ok else 'FAILED'} (every node reaches every other:"
            f" {'yes' if report.reachable else 'NO'}; survives any single RR failure: {tolerant})"
        )
    paths = result.extra.get("paths")
    if isinstance(paths, PathReport):
        lines.extend(format_paths(paths))
    return "\n".join(lines)
