"""Grading results as text: the terminal table, the Markdown summary (a CI run's summary page, a student's
feedback file) and the closing count line with the points."""

from __future__ import annotations

from segedu.course.grading import STATUSES, ExerciseResult

__all__ = ["ICONS", "counts", "total_points", "format_results", "format_markdown"]

ICONS = {"passed": "✅", "failed": "❌", "not attempted": "⬜", "error": "💥", "timeout": "⏱️",
         "tampered": "🚫", "missing": "❓"}


def _one_line(message: str) -> str:
    return " ".join(message.split())


def total_points(results: list[ExerciseResult]) -> tuple[int, int]:
    """``(points earned, points possible)``."""
    return sum(r.points for r in results), sum(r.max_points for r in results)


def counts(results: list[ExerciseResult]) -> str:
    """``"20 passed, 1 failed, 1 not attempted - 20/22 points"``; the other statuses only when they occur."""
    n = {s: sum(r.status == s for r in results) for s in STATUSES}
    parts = [f"{n[s]} {s}" for s in STATUSES if n[s] or s in ("passed", "failed", "not attempted")]
    earned, possible = total_points(results)
    return ", ".join(parts) + f" - {earned}/{possible} points"


def format_results(results: list[ExerciseResult]) -> str:
    """A plain-text table, one row per exercise with its points and the check's whole message, and the count."""
    rows = [("notebook", "exercise", "status", "points", "message")]
    rows += [(r.notebook, r.exercise, r.status, f"{r.points}/{r.max_points}", _one_line(r.message)) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join([*(cell.ljust(w) for cell, w in zip(row, widths)), row[4]]).rstrip() for row in rows]
    lines.insert(1, "  ".join(["-" * w for w in widths] + ["-" * len("message")]))
    lines.append(counts(results))
    return "\n".join(lines)


def format_markdown(results: list[ExerciseResult], title: str = "Exercises") -> str:
    """The same table in Markdown (``--summary``: a CI job's summary page; a student's feedback file)."""
    lines = ["| notebook | exercise | status | points | message |", "|---|---|---|---:|---|"]
    for r in results:
        message = _one_line(r.message).replace("|", "\\|")
        lines.append(f"| {r.notebook} | `{r.exercise}` | {ICONS.get(r.status, '')} {r.status} | "
                     f"{r.points}/{r.max_points} | {message} |")
    earned, possible = total_points(results)
    return "\n".join([f"## {title}", "", f"**{earned}/{possible} points**", "", *lines, "", counts(results), ""])
