"""The report folder: one list of sections rendered as Markdown and as standalone HTML."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

from vitaccel.viz.table import markdown


@dataclass
class Section:
    """A titled block: text paragraphs, then tables (header, rows), then figures (file, caption)."""

    title: str
    text: list[str] = field(default_factory=list)
    tables: list[tuple[list[str], list[list[object]]]] = field(default_factory=list)
    figures: list[tuple[str, str]] = field(default_factory=list)


def write_report(out_dir: str | Path, title: str, sections: list[Section]) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` (figures referenced by relative path)."""
    out_dir = Path(out_dir)
    md = [f"# {title}", ""]
    for s in sections:
        md += [f"## {s.title}", ""]
        for t in s.text:
            md += [t, ""]
        for header, rows in s.tables:
            md += [markdown(header, rows), ""]
        for file, caption in s.figures:
            md += [f"![{caption}]({file})", "", f"*{caption}*", ""]
    md_path = out_dir / "report.md"
    md_path.write_text("\n".join(md))

    body = [f"<h1>{html.escape(title)}</h1>"]
    for s in sections:
        body.append(f"<h2>{html.escape(s.title)}</h2>")
        body += [f"<p>{html.escape(t)}</p>" for t in s.text]
        for header, rows in s.tables:
            head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
            cells = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{cells}</tbody></table>")
        for file, caption in s.figures:
            body.append(f'<figure><img src="{html.escape(file)}" alt="{html.escape(caption)}">'
                        f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    style = ("body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}"
             "table{border-collapse:collapse;margin:1em 0;font-size:0.9em}td,th{border:1px solid #ccc;"
             "padding:3px 8px;text-align:right}th{background:#f3f3f3}td:first-child{text-align:left}"
             "img{max-width:100%}figcaption{color:#555;font-size:0.9em}")
    html_path = out_dir / "report.html"
    html_path.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
                         f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")
    return md_path, html_path
