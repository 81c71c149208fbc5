"""report.html: the comparison in one file that opens offline: tables, plots as base64 PNGs, commands, versions."""

import base64
from html import escape
from pathlib import Path

from peftlab.compare.plots import TITLES

STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; padding: 0 1rem; color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
figure { margin: 1rem 0 2rem; } figure img { max-width: 100%; border: 1px solid #eee; }
pre { background: #f7f7f7; padding: 0.8rem; overflow-x: auto; font-size: 12px; }
"""


def _bold(text: str) -> str:
    """The verdict's **winner** (markdown) as <strong>; everything else escaped."""
    parts = escape(text).split("**")
    return "".join(f"<strong>{p}</strong>" if i % 2 else p for i, p in enumerate(parts))


def _table(table) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in table.header)
    body = "".join("<tr>" + "".join(f"<td>{_bold(c)}</td>" for c in row) + "</tr>" for row in table.rows)
    return (
        f'<h2>{escape(table.title)}</h2>\n<table id="{table.html_id}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table>"
    )


def _figure(name: str, path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    title = escape(TITLES.get(name, name))
    return (
        f'<figure id="plot-{name}"><img alt="{title}" src="data:image/png;base64,{data}">'
        f"<figcaption>{title}</figcaption></figure>"
    )


def write_html(
    path: Path,
    title: str,
    notes: list[str],
    tables: list,
    plots: dict[str, Path],
    commands: list[str],
    versions: dict[str, str],
) -> Path:
    parts = [
        f"<!doctype html>\n<html lang='en'><head><meta charset='utf-8'><title>{escape(title)}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        "<ul>" + "".join(f"<li>{escape(n)}</li>" for n in notes) + "</ul>",
        *(_table(t) for t in tables),
        "<h2>Plots</h2>",
        *(_figure(name, p) for name, p in plots.items()),
        "<h2>Commands</h2>",
        f"<pre id='commands'>{escape(chr(10).join(commands))}</pre>",
        "<h2>Versions</h2>",
        "<table id='versions'>"
        + "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in versions.items())
        + "</table>",
        "</body></html>",
    ]
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
