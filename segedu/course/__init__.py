"""Course plumbing: show the package's real code in a lesson (``lessons``), the student release
(``release``), its manifest of exercises and check cells (``manifest``), the ``student`` branch that carries
releases to students' repositories (``student_branch``) and the exercise grader (``grading``) behind
``python -m segedu release``, ``manifest`` and ``check``; ``html`` executes the lessons into a website with an
index (``make course``: ``python -m segedu.course.html``, not imported here so that it runs as a module).

Lessons never copy code: ``show(fn)`` prints the source of the function or class a lesson is about, straight
from the package, so what students read is what runs and what the tests check.

Exercise convention (see CONTRIBUTING.md): a code cell holds the student's function with the reference
solution between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` lines; the next cell calls a
``segedu.checks`` function on it. The student release replaces each solution block by
``raise NotImplementedError()``. Grading (``grading``; ``gradebook`` for many students) runs a lesson's set-up
and exercise cells in a worker process and each check in the grader's own process, against the exercises of
the grader's manifest: passed when the check returns, never from what a notebook prints.
(The markers and the release follow nbgrader's, without its database: a course here is a git repository.)
"""

# Re-exported, so that lessons write `course.show(fn)` and scripts `course.release(...)`: every public name of
# the lesson index, the release and the grader, and the pieces of the manifest, report and gradebook that
# scripts use. (__all__ is built before the star imports: `release` is a module and, after them, a function.)
from segedu.course import grading, lessons, release

__all__ = [
    *lessons.__all__,
    *release.__all__,
    "build_manifest",
    "read_manifest",
    "check_cell_sha256",
    "counts",
    "format_results",
    "format_markdown",
    "grade_submission",
    "grade_submissions",
    "write_gradebook",
    *grading.__all__,
]

from segedu.course.gradebook import grade_submission, grade_submissions, write_gradebook  # noqa: E402
from segedu.course.grading import *  # noqa: E402, F403
from segedu.course.lessons import *  # noqa: E402, F403
from segedu.course.manifest import build_manifest, check_cell_sha256, read_manifest  # noqa: E402
from segedu.course.release import *  # noqa: E402, F403
from segedu.course.report import counts, format_markdown, format_results  # noqa: E402
