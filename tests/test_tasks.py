import pytest
import torch

from segedu.data.tasks import panoptic_from_instances, semantic_from_instances, split_panoptic


def _target():
    masks = torch.zeros(3, 6, 6, dtype=torch.uint8)
    masks[0, :2, :2] = 1
    masks[1, 3:, 3:] = 1
    masks[2, :2, 4:] = 1
    return torch.tensor([2, 2, 5]), masks


def test_semantic_paints_labels():
    labels, masks = _target()
    sem = semantic_from_instances(labels, masks)
    assert sem.dtype == torch.int64 and sem.shape == (6, 6)
    assert (sem[:2, :2] == 2).all() and (sem[3:, 3:] == 2).all() and (sem[:2, 4:] == 5).all()
    assert (sem == 0).sum() == 36 - 4 - 9 - 4


def test_panoptic_tells_instances_of_one_class_apart():
    labels, masks = _target()
    pan = panoptic_from_instances(labels, masks)
    cls, inst = split_panoptic(pan)
    assert torch.equal(cls, semantic_from_instances(labels, masks))
    assert pan[0, 0] == 2001 and pan[5, 5] == 2002 and pan[0, 5] == 5001 and pan[2, 2] == 0
    assert len(pan.unique()) == 4  # stuff + three things
    assert (inst[cls == 0] == 0).all()


def test_panoptic_with_a_stuff_map_and_errors():
    labels, masks = _target()
    stuff = torch.zeros(6, 6, dtype=torch.int64)
    stuff[3:, :3] = 7
    pan = panoptic_from_instances(labels, masks, stuff=stuff)
    assert pan[5, 0] == 7000
    with pytest.raises(ValueError, match="stuff"):
        panoptic_from_instances(labels, masks, stuff=torch.zeros(5, 5, dtype=torch.int64))
    with pytest.raises(ValueError, match="labels"):
        semantic_from_instances(labels[:2], masks)
    with pytest.raises(ValueError, match="masks"):
        semantic_from_instances(labels, masks[0])
