"""Lesson 12's widget redraws when a control moves and reports what it shows."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from segedu import widgets  # noqa: E402
from segedu.clustering import cluster_embeddings  # noqa: E402
from segedu.data.shapes import ShapesDataset  # noqa: E402
from segedu.data.tasks import instance_ids  # noqa: E402


@pytest.fixture(scope="module")
def scenes():
    """Three scenes with embeddings at the loss's optimum: each instance within 0.4 of its own centre."""
    images, targets = ShapesDataset(3, size=32, seed=2, variant="instance", min_objects=2).batch(range(3))
    truth = torch.stack([instance_ids(t["masks"]) for t in targets])
    gen = torch.Generator().manual_seed(0)
    embeddings = torch.randn(3, 4, 32, 32, generator=gen) * 0.1
    for b in range(3):
        for i in truth[b].unique().tolist():
            if i:
                embeddings[b, i % 4, truth[b] == i] += 3.0 * (1 + i // 4)
    found = cluster_embeddings(embeddings, truth > 0)
    return images, embeddings, found, truth


def test_embedding_explorer_redraws_and_reports(scenes):
    images, embeddings, found, truth = scenes
    demo = widgets.embedding_explorer(images, embeddings, found, truth)
    assert isinstance(demo, widgets.FigureDemo)
    first = demo.image.value
    assert demo.result["pixels"] == int((found[0] > 0).sum())
    assert demo.result["found"] == demo.result["true"] == len(truth[0].unique()) - 1
    assert 0 < demo.result["explained"] <= 1
    demo.update(index=2)
    assert demo.image.value != first and demo.result["pixels"] == int((found[2] > 0).sum())
    found_png = demo.image.value
    demo.update(colour_by="true instance")
    assert demo.image.value != found_png


def test_draw_embedding_view_on_a_figure(scenes):
    images, embeddings, found, truth = scenes
    fig = plt.figure()
    result = widgets.draw_embedding_view(fig, images[1], embeddings[1], found[1], truth[1], "true instance", 0.5,
                                         title="scene 1")
    assert len(fig.axes) == 2 and result["pixels"] > 0
    plt.close(fig)
    # nothing found: an empty scatter, no error
    fig = plt.figure()
    empty = widgets.draw_embedding_view(fig, images[0], embeddings[0], torch.zeros_like(found[0]), truth[0])
    assert empty["pixels"] == 0 and empty["found"] == 0
    plt.close(fig)


def test_bad_arguments(scenes):
    images, embeddings, found, truth = scenes
    with pytest.raises(ValueError, match="same scenes"):
        widgets.embedding_explorer(images[:2], embeddings, found, truth)
    with pytest.raises(ValueError, match="colour_by"):
        widgets.draw_embedding_view(plt.figure(), images[0], embeddings[0], found[0], truth[0], "class")
    plt.close("all")
