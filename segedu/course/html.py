"""The course as a website: every lesson executed and exported to HTML, with an index page (``make course``).

``build_course(lessons, out)`` runs each notebook top to bottom in a kernel of the current interpreter
(``segedu.course.grading.execute_notebook``, with the sizes of ``SEGEDU_PROFILE``), times it, exports it with
nbconvert's ``HTMLExporter`` (outputs and figures embedded, one self-contained page per lesson) and writes
``index.html``: per lesson its title, its **Question.** paragraph, what it measures (the list after "you
will ..." in its introduction, taken from the notebook itself) and its run time, linked to its page.

A lesson whose cell fails still gets its page (the traceback is in it) and a line in the index marked
FAILED with the cell and the error; the other lessons are built all the same. ``python -m segedu.course.html``
then exits with 1, naming the failed lessons.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from dataclasses import dataclass
from html import escape
from pathlib import Path

__all__ = ["LessonPage", "lesson_summary", "first_error", "format_seconds", "export_html", "write_index",
           "build_course", "main"]

LIST_ITEM = re.compile(r"^\s{0,3}(?:\d+[.)]|[*+-])\s+")


@dataclass(frozen=True)
class LessonPage:
    """One lesson of the site: its notebook ``filename``, its page ``href`` (relative to the index), ``title``,
    ``question`` and ``measures`` (markdown, from the notebook), run time in ``seconds`` and ``error`` (None,
    or ``"cell 12: ValueError: ..."`` for the first failing cell)."""

    filename: str
    href: str
    title: str
    question: str
    measures: tuple[str, ...]
    seconds: float
    error: str | None = None


def _intro(nb) -> str:
    """The lesson's introduction: the first markdown cell with a **Question.** (else the first with a heading)."""
    markdown = [c.source for c in nb.cells if c.cell_type == "markdown"]
    return next((s for s in markdown if "**Question.**" in s), next((s for s in markdown if s.startswith("#")), ""))


def _list_after(lines: list[str]) -> list[str]:
    """The items of the first markdown list in ``lines`` (continuation lines joined), stopping at the text
    after it."""
    items: list[str] = []
    for line in lines:
        if LIST_ITEM.match(line):
            items.append(LIST_ITEM.sub("", line).strip())
        elif items and line.strip() and line[:1] in (" ", "\t"):
            items[-1] += " " + line.strip()
        elif items and line.strip():
            break
    return items


def lesson_summary(nb) -> tuple[str, str, tuple[str, ...]]:
    """``(title, question, measures)`` of a lesson notebook (``nbformat`` node), read from its introduction.

    The title is its ``# `` heading, the question the paragraph that starts with ``**Question.**``, the measures
    the list that follows the first line saying "you will" (or the first list of the introduction). Missing
    parts are empty strings / an empty tuple.
    """
    lines = _intro(nb).splitlines()
    title = next((line[2:].strip() for line in lines if line.startswith("# ")), "")
    question: list[str] = []
    for line in lines:
        if question and not line.strip():
            break
        if question or line.lstrip().startswith("**Question.**"):
            question.append(line.strip())
    start = next((i + 1 for i, line in enumerate(lines) if re.search(r"\byou will\b", line, re.I)), 0)
    measures = _list_after(lines[start:]) or _list_after(lines)
    return title, " ".join(question), tuple(measures)


def first_error(nb) -> str | None:
    """``"cell N: Name: message"`` of the first error output of an executed notebook (cells tagged
    ``raises-exception`` are meant to raise and are skipped), or None."""
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or "raises-exception" in cell.get("metadata", {}).get("tags", []):
            continue
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                message = str(output.get("evalue", "")).strip().splitlines()
                return f"cell {index}: {output.get('ename', 'Error')}: {message[0] if message else ''}".rstrip(": ")
    return None


def format_seconds(seconds: float) -> str:
    """``8.2`` -> ``"8.2 s"``, ``83`` -> ``"1 min 23 s"``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"


def export_html(nb, path: str | Path, title: str) -> Path:
    """Write an executed notebook as one self-contained HTML page (nbconvert's ``lab`` template, figures
    embedded), titled ``title``. Returns the path."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter(template_name="lab").from_notebook_node(nb, resources={"metadata": {"name": title}})
    path = Path(path)
    path.write_text(body, encoding="utf-8")
    return path


_STYLE = """body { font-family: system-ui, sans-serif; max-width: 56rem; margin: 2rem auto; padding: 0 1rem;
  line-height: 1.45; color: #222; }
article { border-top: 1px solid #ddd; padding: 0.6rem 0 0.8rem; }
h2 { margin: 0.4rem 0; font-size: 1.2rem; }
.meta { color: #555; font-size: 0.9rem; }
.failed { color: #b00020; font-weight: bold; }
.measures { margin: 0.3rem 0; }"""


def write_index(pages: list[LessonPage], out: str | Path, title: str = "segedu: the lessons, executed") -> Path:
    """Write ``out/index.html``: one entry per lesson page - title (a link to it), question, what it measures,
    run time, and FAILED with the error where a cell failed. Returns its path."""
    from nbconvert.filters import markdown2html

    entries = []
    for page in pages:
        measures = "".join(f"<li>{markdown2html(item).strip().removeprefix('<p>').removesuffix('</p>')}</li>"
                           for item in page.measures)
        status = ("ran without errors" if page.error is None
                  else f'<span class="failed">FAILED: {escape(page.error)}</span>')
        entries.append(
            f'<article class="lesson" id="{escape(Path(page.filename).stem)}">\n'
            f'<h2><a href="{escape(page.href)}">{escape(page.title or page.filename)}</a></h2>\n'
            f'<div class="question">{markdown2html(page.question) if page.question else ""}</div>\n'
            + (f'<div class="measures">What it measures:<ol>{measures}</ol></div>\n' if measures else "")
            + f'<p class="meta">run time {format_seconds(page.seconds)} · {status} · '
            f'<code>{escape(page.filename)}</code></p>\n</article>'
        )
    total = sum(page.seconds for page in pages)
    failed = sum(page.error is not None for page in pages)
    summary = (f"{len(pages)} lesson{'s' * (len(pages) != 1)}, {format_seconds(total)} in all"
               + (f", {failed} failed" if failed else ""))
    text = (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{escape(title)}</title>\n'
            f"<style>\n{_STYLE}\n</style>\n</head>\n<body>\n<h1>{escape(title)}</h1>\n"
            f'<p class="meta">{summary}</p>\n' + "\n".join(entries) + "\n</body>\n</html>\n")
    path = Path(out) / "index.html"
    path.write_text(text, encoding="utf-8")
    return path


def build_course(lessons: str | Path = "lessons", out: str | Path = "build/course", *, timeout: int = 1800,
                 progress: bool = True) -> list[LessonPage]:
    """Execute every ``*.ipynb`` of ``lessons`` (in name order, in that folder, ``timeout`` seconds per cell),
    write ``out/<name>.html`` for each and ``out/index.html``; returns the pages (``error`` set where a cell
    failed). The lessons themselves are not modified."""
    import nbformat
    from tqdm.auto import tqdm

    from segedu import validate
    from segedu.course.grading import execute_notebook

    timeout = validate.positive_int(timeout, "timeout")
    validate.flag(progress, "progress")
    lessons = Path(lessons)
    if not lessons.is_dir():
        raise ValueError(f"lessons must be a folder of notebooks, got {str(lessons)!r} (not a folder)")
    notebooks = sorted(lessons.glob("*.ipynb"))
    if not notebooks:
        raise ValueError(f"lessons must be a folder of notebooks, got {str(lessons)!r} (no *.ipynb in it)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pages = []
    bar = tqdm(notebooks, desc="course", unit="lesson", disable=not progress)
    for path in bar:
        bar.set_postfix_str(path.name)
        nb = nbformat.read(path, as_version=4)
        title, question, measures = lesson_summary(nb)
        start = time.perf_counter()
        try:
            execute_notebook(nb, cwd=lessons, timeout=timeout)
            error = first_error(nb)
        except Exception as err:  # the kernel died or would not start: report it, build the other lessons
            error = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
        seconds = time.perf_counter() - start
        href = f"{path.stem}.html"
        export_html(nb, out / href, title or path.stem)
        pages.append(LessonPage(path.name, href, title, question, measures, seconds, error))
        if error is not None:
            bar.write(f"{path.name} FAILED: {error}")
    write_index(pages, out)
    return pages


def main(argv: list[str] | None = None) -> int:
    """``python -m segedu.course.html [LESSONS] [--out DIR] [--timeout S]``: 0 when every lesson ran, 1 (and the
    failed lessons named on stderr) otherwise."""
    parser = argparse.ArgumentParser(prog="python -m segedu.course.html", description=__doc__.splitlines()[0])
    parser.add_argument("lessons", nargs="?", default="lessons", help="folder of lesson notebooks (default: lessons)")
    parser.add_argument("--out", default="build/course", help="output folder (default: build/course)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell (default: 1800)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        pages = build_course(args.lessons, args.out, timeout=args.timeout, progress=not args.no_progress)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    index = Path(args.out) / "index.html"
    failed = [page for page in pages if page.error is not None]
    for page in failed:
        print(f"FAILED {page.filename}: {page.error}", file=sys.stderr)
    if failed:
        print(f"{len(failed)} of {len(pages)} lessons failed; the site is in {index}", file=sys.stderr)
        return 1
    lessons = f"{len(pages)} lesson{'s' * (len(pages) != 1)}"
    print(f"{lessons} executed in {format_seconds(sum(p.seconds for p in pages))}: open {index}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
