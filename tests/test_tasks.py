import pytest
import torch

from segedu.data.tasks import instance_ids, panoptic_from_instances, semantic_from_instances, split_panoptic


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


def test_instance_ids_number_the_objects_without_their_class():
    labels, masks = _target()
    ids = instance_ids(masks)
    assert ids.dtype == torch.int64 and ids.shape == (6, 6)
    assert (ids[:2, :2] == 1).all() and (ids[3:, 3:] == 2).all() and (ids[:2, 4:] == 3).all()
    assert (ids == 0).sum() == 36 - 4 - 9 - 4
    # the instance view tells the two class-2 objects apart; the semantic view cannot
    assert ids[0, 0] != ids[5, 5] and semantic_from_instances(labels, masks)[0, 0] == semantic_from_instances(labels, masks)[5, 5]
    overlapping = torch.stack([masks[0], masks[0]])
    assert (instance_ids(overlapping)[:2, :2] == 2).all()  # the later mask wins
    assert instance_ids(torch.zeros(0, 4, 5, dtype=torch.uint8)).eq(0).all()
    with pytest.raises(ValueError, match="masks must be 3-D"):
        instance_ids(masks[0])
    with pytest.raises(TypeError, match="masks must be a torch.Tensor"):
        instance_ids(masks.numpy())


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


def test_argument_types_follow_the_rule():
    labels, masks = _target()
    with pytest.raises(TypeError, match="masks"):
        semantic_from_instances(labels, masks.tolist())
    with pytest.raises(TypeError, match="labels"):
        semantic_from_instances([2, 2, 5], masks)
    with pytest.raises(TypeError, match="background"):
        semantic_from_instances(labels, masks, background=True)
    for bad, error in ((True, TypeError), (2.5, TypeError), (-1, ValueError), (0, ValueError)):
        with pytest.raises(error, match="label_divisor"):
            panoptic_from_instances(labels, masks, label_divisor=bad)
        with pytest.raises(error, match="label_divisor"):
            split_panoptic(torch.zeros(2, 2, dtype=torch.int64), label_divisor=bad)
    with pytest.raises(TypeError, match="stuff"):
        panoptic_from_instances(labels, masks, stuff=2.5)
    with pytest.raises(TypeError, match="panoptic"):
        split_panoptic([[1000]])
