"""A self-contained HTML page (inline CSS and SVG) picturing a plan: zones, RRs, groups, verdict.

`scene` reads the plan into what is drawn, `layout` places it, `svg` draws it, `page` wraps the
drawing with the tables."""

from hooks.picture.page import render_html

__all__ = ["render_html"]
