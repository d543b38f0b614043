"""The report folder: one list of sections rendered as Markdown and as standalone HTML."""

from __future__ import annotations

import html
import os
from dataclasses import dataclass, field
from pathlib import Path

from vitaccel.viz.table import markdown


@dataclass
class Section:
    """A titled block: text paragraphs, a bulleted list, tables (header, rows), figures (file, caption)."""

    title: str
    text: list[str] = field(default_factory=list)
    tables: list[tuple[list[str], list[list[object]]]] = field(default_factory=list)
    figures: list[tuple[str, str]] = field(default_factory=list)
    lists: list[str] = field(default_factory=list)


def _write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically: an interrupted run leaves the old file or the new one."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def to_markdown(title: str, sections: list[Section]) -> str:
    """The report as GitHub-flavoured Markdown."""
    md = [f"# {title}", ""]
    for s in sections:
        md += [f"## {s.title}", ""]
        for t in s.text:
            md += [t, ""]
        if s.lists:
            md += [f"- {item}" for item in s.lists] + [""]
        for header, rows in s.tables:
            md += [markdown(header, rows), ""]
        for file, caption in s.figures:
            md += [f"![{caption}]({file})", "", f"*{caption}*", ""]
    return "\n".join(md)


STYLE = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
         "table{border-collapse:collapse;margin:1em 0;font-size:0.9em}td,th{border:1px solid #ccc;"
         "padding:3px 8px;text-align:right}th{background:#f3f3f3}td:first-child{text-align:left}"
         "img{max-width:100%}figcaption{color:#555;font-size:0.9em}li{margin:0.2em 0}")


def to_html(title: str, sections: list[Section]) -> str:
    """The report as one standalone HTML page (figures referenced by relative path)."""
    e = html.escape
    body = [f"<h1>{e(title)}</h1>"]
    for s in sections:
        body.append(f"<h2>{e(s.title)}</h2>")
        body += [f"<p>{e(t)}</p>" for t in s.text]
        if s.lists:
            body.append("<ul>" + "".join(f"<li>{e(item)}</li>" for item in s.lists) + "</ul>")
        for header, rows in s.tables:
            head = "".join(f"<th>{e(str(h))}</th>" for h in header)
            cells = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>" for r in rows)
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{cells}</tbody></table>")
        for file, caption in s.figures:
            body.append(f'<figure><img src="{e(file)}" alt="{e(caption)}"><figcaption>{e(caption)}</figcaption>'
                        "</figure>")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title><style>{STYLE}</style>"
            f"</head><body>{''.join(body)}</body></html>\n")


def write_report(out_dir: str | Path, title: str, sections: list[Section]) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` into ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    md_path, html_path = out_dir / "report.md", out_dir / "report.html"
    _write(md_path, to_markdown(title, sections))
    _write(html_path, to_html(title, sections))
    return md_path, html_path
