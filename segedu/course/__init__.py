"""Course plumbing: show the package's real code in a lesson (``lessons``), the student release
(``release``) and the exercise grader (``grading``) behind ``python -m segedu release`` and ``check``.

Lessons never copy code: ``show(fn)`` prints the source of the function or class a lesson is about, straight
from the package, so what students read is what runs and what the tests check.

Exercise convention (see CONTRIBUTING.md): a code cell holds the student's function with the reference
solution between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` lines; the next cell calls a
``segedu.checks`` function on it. The student release replaces each solution block by
``raise NotImplementedError()``; grading runs a notebook with errors allowed and reads each check cell's
outcome: passed (a line ending in ``PASSED``), not attempted (``NotImplementedError``) or failed (the message).
(The markers and the release follow nbgrader's, without its database: a course here is a git repository.)
"""

from segedu.course.grading import (
    STATUSES,
    ExerciseResult,
    check_notebook,
    execute_notebook,
    format_markdown,
    format_results,
    grade_executed,
)
from segedu.course.lessons import LESSONS, Lesson, lesson_index, show, source
from segedu.course.release import (
    ANSWER_PLACEHOLDER,
    BEGIN_SOLUTION,
    CHECK_CALL,
    CODE_PLACEHOLDER,
    END_SOLUTION,
    INSTRUCTOR_TAGS,
    release,
    release_notebook,
    strip_solutions,
)

__all__ = [
    "source",
    "show",
    "Lesson",
    "LESSONS",
    "lesson_index",
    "BEGIN_SOLUTION",
    "END_SOLUTION",
    "CODE_PLACEHOLDER",
    "ANSWER_PLACEHOLDER",
    "INSTRUCTOR_TAGS",
    "CHECK_CALL",
    "strip_solutions",
    "release_notebook",
    "release",
    "STATUSES",
    "ExerciseResult",
    "grade_executed",
    "execute_notebook",
    "check_notebook",
    "format_results",
    "format_markdown",
]
