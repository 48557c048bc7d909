"""The lessons and their code: ``show(fn)`` prints the package's real source in a lesson; ``LESSONS`` lists them.

Lessons never copy code: ``show(fn)`` displays the source of the function or class a lesson is about, straight
from the package, so what students read is what runs and what the tests check.

Every lesson also opens on Google Colab: ``add_colab_cells(nb, filename)`` puts an "Open in Colab" badge and a
first code cell that installs the course from ``REPOSITORY`` when (and only when) the notebook runs on Colab;
anywhere else that cell does nothing, since ``make lab`` or ``pip install`` already installed the package.
"""

from __future__ import annotations

import inspect
import textwrap
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "source",
    "show",
    "Lesson",
    "LESSONS",
    "lesson_index",
    "REPOSITORY",
    "BRANCH",
    "COLAB_BADGE_ID",
    "COLAB_INSTALL_ID",
    "colab_url",
    "colab_badge",
    "colab_install_source",
    "add_colab_cells",
]


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
    Lesson(12, "12_instance_embeddings.ipynb", "Instance segmentation without boxes"),
)


def lesson_index(lessons_dir: str | Path = "lessons") -> list[Lesson]:
    """The lessons that exist in ``lessons_dir``, in course order."""
    root = Path(lessons_dir)
    return [lesson for lesson in LESSONS if (root / lesson.filename).exists()]


# ----------------------------------------------------------------------------------------------------
# Google Colab: a badge and an install cell in every lesson
# ----------------------------------------------------------------------------------------------------

REPOSITORY = "https://github.com/segedu/segedu"
"""The course's public GitHub repository: the one place the badges and the Colab install read it from."""

BRANCH = "main"
"""The branch that the badges open and that Colab installs."""

COLAB_BADGE_ID = "colab-badge"
COLAB_INSTALL_ID = "colab-install"
"""The cell ids of the two Colab cells: ``add_colab_cells`` finds (and replaces) its own cells by them."""


def _github_path() -> str:
    """``owner/name`` of ``REPOSITORY`` (Colab opens notebooks from GitHub only)."""
    prefix = "https://github.com/"
    if not REPOSITORY.startswith(prefix) or REPOSITORY.removeprefix(prefix).count("/") != 1:
        raise ValueError(f"REPOSITORY must look like https://github.com/OWNER/NAME, got {REPOSITORY!r}")
    return REPOSITORY.removeprefix(prefix)


def colab_url(filename: str) -> str:
    """The address that opens ``lessons/<filename>`` of ``REPOSITORY`` at ``BRANCH`` in Colab."""
    if not isinstance(filename, str):
        raise TypeError(f"filename must be a str such as '00_segmentation_task.ipynb', got {type(filename).__name__}")
    if not filename.endswith(".ipynb") or "/" in filename or "\\" in filename:
        raise ValueError(
            f"filename must be a notebook's file name such as '00_segmentation_task.ipynb', got {filename!r}"
        )
    return f"https://colab.research.google.com/github/{_github_path()}/blob/{BRANCH}/lessons/{filename}"


def colab_badge(filename: str) -> str:
    """The markdown of the "Open in Colab" badge of one lesson."""
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab_url(filename)})"


def colab_install_source() -> str:
    """The source of a lesson's first code cell: on Colab, ``pip install`` the course from ``REPOSITORY``.

    Everywhere else it does nothing: the test is ``"google.colab" in sys.modules``, which holds only in a Colab
    kernel (it imports ``google.colab`` at start-up). Colab ships torch, torchvision and numpy already; pip
    keeps them when they satisfy the course's ranges and adds the rest of the base install (no JupyterLab).
    """
    requirement = f"segedu @ git+https://github.com/{_github_path()}@{BRANCH}"
    return (
        "# On Google Colab: install the course first (elsewhere this cell does nothing: `make lab` installed it).\n"
        "import sys\n"
        "\n"
        'if "google.colab" in sys.modules:\n'
        "    import subprocess\n"
        "\n"
        f'    requirement = "{requirement}"\n'
        '    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", requirement], check=True)'
    )


def add_colab_cells(nb, filename: str):
    """Put the Colab badge (markdown) and the Colab install cell (code) first in ``nb``; returns ``nb``.

    ``nb`` is a notebook read with ``nbformat.read(path, as_version=4)``; ``filename`` its file name in
    ``lessons/`` (the badge links to it). Idempotent: cells with the ids ``COLAB_BADGE_ID`` and
    ``COLAB_INSTALL_ID`` are replaced, never duplicated, so running it again after a change of ``REPOSITORY``
    updates every lesson. The other cells keep their order and content.
    """
    from nbformat.v4 import new_code_cell, new_markdown_cell

    cells = nb.get("cells") if isinstance(nb, dict) else None
    if not isinstance(cells, list):
        raise TypeError(f"nb must be a notebook (nbformat.read(path, as_version=4)), got {type(nb).__name__}")
    badge = new_markdown_cell(colab_badge(filename))
    install = new_code_cell(colab_install_source())
    badge["id"], install["id"] = COLAB_BADGE_ID, COLAB_INSTALL_ID
    kept = [cell for cell in cells if cell.get("id") not in (COLAB_BADGE_ID, COLAB_INSTALL_ID)]
    cells[:] = [badge, install, *kept]
    return nb
