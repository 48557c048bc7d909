"""The lessons and their code: ``show(fn)`` prints the package's real source in a lesson; ``LESSONS`` lists them.

Lessons never copy code: ``show(fn)`` displays the source of the function or class a lesson is about, straight
from the package, so what students read is what runs and what the tests check.
"""

from __future__ import annotations

import inspect
import textwrap
from dataclasses import dataclass
from pathlib import Path

__all__ = ["source", "show", "Lesson", "LESSONS", "lesson_index"]


def source(obj) -> str:
    """The source code of a function, class, method or module, dedented."""
    try:
        text = inspect.getsource(obj)
    except (TypeError, OSError) as err:
        raise TypeError(f"show() needs a function, class, method or module written in Python, got {obj!r}") from err
    return textwrap.dedent(text).rstrip() + "\n"


def show(obj):
    """Display the source of ``obj`` with syntax highlighting in a notebook (plain text elsewhere).

    Returns an ``IPython.display.Code`` object: put ``show(fn)`` last in a cell to render it.
    """
    from IPython.display import Code

    return Code(source(obj), language="python")


@dataclass(frozen=True)
class Lesson:
    number: int
    filename: str
    title: str


LESSONS: tuple[Lesson, ...] = (
    Lesson(0, "00_segmentation_task.ipynb", "The segmentation task"),
    Lesson(1, "01_autoencoders.ipynb", "Autoencoders"),
    Lesson(2, "02_upsampling.ipynb", "Upsampling"),
    Lesson(3, "03_transposed_convolution.ipynb", "Transposed convolution"),
    Lesson(4, "04_dilated_convolution.ipynb", "Dilated convolution"),
    Lesson(5, "05_fcn.ipynb", "Fully convolutional networks"),
    Lesson(6, "06_unet.ipynb", "U-Net"),
    Lesson(7, "07_deeplab_crf.ipynb", "DeepLab and the dense CRF"),
    Lesson(8, "08_pspnet_context.ipynb", "PSPNet and context"),
    Lesson(9, "09_mask_rcnn.ipynb", "Mask R-CNN"),
    Lesson(10, "10_losses.ipynb", "Losses"),
    Lesson(11, "11_capstone.ipynb", "Capstone"),
)


def lesson_index(lessons_dir: str | Path = "lessons") -> list[Lesson]:
    """The lessons that exist in ``lessons_dir``, in course order."""
    root = Path(lessons_dir)
    return [lesson for lesson in LESSONS if (root / lesson.filename).exists()]
