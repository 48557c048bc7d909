"""segedu.train: fit on the three kinds of data source, determinism, self-computed losses, validation,
callbacks, evaluate/predict, and argument errors (checkpoints: tests/test_checkpoint.py)."""

import copy

import pytest
import torch
from torch import nn
from torch.utils.data import Subset, TensorDataset

from segedu.data.shapes import ShapesDataset
from segedu.train import History, evaluate, fit, predict

NUM_CLASSES = 3


class ArgmaxScenes:
    """A tiny easy task with the ``.batch()`` interface of ``segedu.data.shapes.ShapesDataset``:
    smooth random 3-channel images whose mask is the brightest channel at each pixel. A tiny conv net
    learns it in a few dozen steps (the shapes scenes need far more), and a known model solves it exactly
    (``perfect_model``), which ``evaluate`` needs to be checked against mIoU = 1."""

    num_classes = NUM_CLASSES

    def __init__(self, length=64, size=16, seed=0):
        g = torch.Generator().manual_seed(seed)
        noise = torch.rand(length, 3, size // 4, size // 4, generator=g)
        self.images = nn.functional.interpolate(noise, size=(size, size), mode="bilinear", align_corners=False)
        self.masks = self.images.argmax(1)
        self.calls = []

    def __len__(self):
        return len(self.images)

    def batch(self, indices):
        self.calls.append(torch.as_tensor(indices).clone())
        return self.images[indices], self.masks[indices]


def tiny_model(seed=0, classes=NUM_CLASSES):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, classes, 1))


def shapes(length=24, **kwargs):
    return ShapesDataset(length, size=16, **kwargs)


def perfect_model():
    """Logits = 10 x the image: the argmax is exactly the mask of ArgmaxScenes."""
    conv = nn.Conv2d(3, NUM_CLASSES, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(10 * torch.eye(3).view(3, 3, 1, 1))
    return conv


CE = nn.CrossEntropyLoss(ignore_index=255)
FAST = dict(batch_size=8, lr=1e-2, device="cpu", progress=False)


def test_loss_goes_down_and_validation_is_recorded():
    data, val = ArgmaxScenes(64), ArgmaxScenes(16, seed=1)
    model = tiny_model()
    history = fit(model, data, CE, 40, val_data=val, **FAST)
    assert isinstance(history, History) and history.steps == 40 and len(history.loss) == 40
    first, last = sum(history.loss[:5]) / 5, sum(history.loss[-5:]) / 5
    assert last < 0.6 * first, (first, last)
    assert [v["step"] for v in history.val] == [40]  # default: validate once, at the end
    assert history.last_val["miou"] > 0.6 and history.last_val["pixel_accuracy"] > 0.8
    assert len(history.last_val["iou"]) == NUM_CLASSES
    assert not model.training  # fit leaves the model in eval mode
    assert history.seconds > 0 and history.images_per_second > 0
    assert "steps=40" in repr(history) and "mIoU" in repr(history)
    # the sampler drew batch_size indices per step, all in range
    assert len(data.calls) == 40 and all(c.shape == (8,) and 0 <= c.min() and c.max() < 64 for c in data.calls)


def test_same_seed_same_losses_other_seed_other_losses():
    model = tiny_model(classes=6)
    runs = [fit(copy.deepcopy(model), shapes(), CE, 4, seed=s, **FAST).loss for s in (3, 3, 4)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


@pytest.mark.parametrize("kind", ["batch", "dataset", "iterable"])
def test_three_kinds_of_train_data(kind):
    scenes = shapes(24)
    images, masks = scenes.batch(range(24))
    data = {
        "batch": scenes,
        "dataset": TensorDataset(images, masks),
        "iterable": [(images[i : i + 8], masks[i : i + 8]) for i in range(0, 24, 8)],
    }[kind]
    seen = []
    history = fit(tiny_model(classes=scenes.num_classes), data, CE, 7,
                  callback=lambda step, m, h: seen.append((step, len(h.loss))), **FAST)
    assert history.steps == 7 and seen == [(s, s) for s in range(1, 8)]  # 3 batches per pass: cycled twice
    assert history.images_per_second > 0


def test_an_exhausted_iterator_is_an_error_not_an_endless_loop():
    scenes = ArgmaxScenes(16)
    once = iter([(scenes.images[:8], scenes.masks[:8])])
    with pytest.raises(ValueError, match="train_data ran out after 1 batches"):
        fit(tiny_model(), once, CE, 3, **FAST)


class DictLossModel(nn.Module):
    """Trains like torchvision's Mask R-CNN: ``model(images, targets)`` returns a dict of losses."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(2.0))

    def forward(self, images, targets):
        assert len(images) == len(targets) and isinstance(targets, list) and isinstance(targets[0], dict)
        boxes = torch.cat([t["boxes"] for t in targets])
        return {"loss_a": (self.scale - 1) ** 2, "loss_b": (self.scale * boxes.mean() - 1).abs()}


def test_model_computed_dict_of_losses_with_list_batches():
    images = [torch.rand(3, 8, 8) for _ in range(4)]
    targets = [{"boxes": torch.tensor([[0.0, 0.0, 1.0, 1.0]]), "labels": torch.tensor([1])} for _ in range(4)]
    batches = [(images[:2], targets[:2]), (images[2:], targets[2:])]
    history = fit(DictLossModel(), batches, None, 5, **FAST)
    assert set(history.parts) == {"loss_a", "loss_b"}
    for i in range(5):
        assert history.loss[i] == pytest.approx(history.parts["loss_a"][i] + history.parts["loss_b"][i])
    assert history.loss[-1] < history.loss[0]


def test_instance_shapes_through_batch_and_through_a_dataloader():
    scenes = shapes(6, variant="instance")
    assert fit(DictLossModel(), scenes, None, 3, **FAST).steps == 3  # .batch(): images [B, 3, H, W], list of dicts
    # A plain Dataset of (image, target dict) items: targets hold different numbers of objects, so they are
    # collated into lists (the default collate would fail to stack them).
    assert fit(DictLossModel(), Subset(scenes, range(6)), None, 3, **FAST).steps == 3


def test_validation_schedule_callback_and_eval_mode():
    calls = []

    def callback(step, model, history):
        calls.append((step, model.training))
        model.eval()  # fit must switch back to train mode for the next step

    history = fit(tiny_model(), ArgmaxScenes(), CE, 5, val_data=ArgmaxScenes(9, seed=2), val_every=2,
                  callback=callback, **FAST)
    assert [v["step"] for v in history.val] == [2, 4, 5]
    assert calls == [(s, True) for s in range(1, 6)]
    assert history.val[0]["images"] == 9


def test_optional_features_run_on_cpu():
    model = tiny_model()
    history = fit(model, ArgmaxScenes(), CE, 4, amp=True, channels_last=True, grad_clip=1.0,
                  scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.5), **FAST)
    assert history.steps == 4
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 1, gamma=0.5)
    fit(model, ArgmaxScenes(), CE, 3, optimizer=optimizer, scheduler=scheduler,
        batch_size=4, device="cpu", progress=False)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**3)


def test_nan_loss_stops_with_a_hint():
    with pytest.raises(FloatingPointError, match="loss became nan at step 1"):
        fit(tiny_model(), ArgmaxScenes(), lambda logits, y: logits.sum() * float("nan"), 3, **FAST)


def test_progress_false_prints_nothing_progress_true_draws_a_bar(capfd):
    fit(tiny_model(), ArgmaxScenes(), CE, 2, **FAST)
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    fit(tiny_model(), ArgmaxScenes(), CE, 2, **{**FAST, "progress": True})
    out, err = capfd.readouterr()
    assert "2/2" in err and "loss" in err


# --------------------------------------------------------------------------- evaluate / predict


def test_evaluate_perfect_model_on_every_kind_of_source():
    scenes = ArgmaxScenes(10)
    sources = [
        scenes,  # .batch(), in chunks of 4: 4 + 4 + 2 images
        TensorDataset(scenes.images, scenes.masks),
        [(scenes.images[:5], scenes.masks[:5]), (scenes.images[5:], scenes.masks[5:])],
    ]
    model = perfect_model().train()
    for source in sources:
        result = evaluate(model, source, NUM_CLASSES, batch_size=4)
        assert result["miou"] == 1.0 and result["pixel_accuracy"] == 1.0 and result["boundary_f1"] == 1.0
        assert result["iou"] == [1.0] * NUM_CLASSES and result["images"] == 10
    assert model.training  # evaluate restores the mode it found
    assert [len(c) for c in scenes.calls] == [4, 4, 2]
    with pytest.raises(TypeError, match="batch_size must be an int >= 1, got float 2.5"):
        evaluate(model, scenes, NUM_CLASSES, batch_size=2.5)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1, got 0"):
        evaluate(model, scenes, NUM_CLASSES, batch_size=0)
    with pytest.raises(TypeError, match="ignore_index must be an int"):
        evaluate(model, scenes, NUM_CLASSES, ignore_index=2.5)


def test_evaluate_counts_ignored_pixels_out_and_reads_torchvision_style_outputs():
    scenes = ArgmaxScenes(4)
    masks = scenes.masks.clone()
    masks[:, :, :3] = 255
    wrong = scenes.images.clone()
    wrong[:, :, :, :3] = torch.flip(wrong[:, :, :, :3], dims=[1])  # wrong only where ignored

    class DictOut(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = perfect_model()

        def forward(self, x):
            return {"out": self.inner(x)}

    result = evaluate(DictOut(), [(wrong, masks)], NUM_CLASSES)
    assert result["miou"] == 1.0 and result["pixel_accuracy"] == 1.0
    imperfect = evaluate(DictOut(), [(wrong, scenes.masks)], NUM_CLASSES)
    assert imperfect["miou"] < 1.0


def test_predict_returns_labels():
    scenes = ArgmaxScenes(3)
    model = perfect_model()
    labels = predict(model, scenes.images)
    assert labels.dtype == torch.int64 and torch.equal(labels, scenes.masks)
    assert torch.equal(predict(model, scenes.images[0]), scenes.masks[0])
    with pytest.raises(ValueError, match=r"images must be .*\[B, C, H, W\] or \[C, H, W\].*\(16, 16\)"):
        predict(model, scenes.images[0, 0])
    with pytest.raises(TypeError, match="images must be a torch.Tensor"):
        predict(model, scenes.images.tolist())


# --------------------------------------------------------------------------- argument errors


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(steps=0), ValueError, "steps must be an int >= 1, got 0"),
        (dict(batch_size=0), ValueError, "batch_size must be an int >= 1, got 0"),
        (dict(steps=True), TypeError, "steps must be an int >= 1, got bool True"),
        (dict(steps=2.5), TypeError, "steps must be an int >= 1, got float 2.5"),
        (dict(batch_size=True), TypeError, "batch_size must be an int >= 1, got bool"),
        (dict(amp="yes"), ValueError, r"amp must be one of \['auto', True, False\], got 'yes'"),
        (dict(channels_last=1), TypeError, r"channels_last must be one of \['auto', True, False\], got int 1"),
        (dict(lr=-1.0), ValueError, r"lr must be a finite number.* 0.*got -1.0"),
        (dict(lr="fast"), TypeError, "lr must be a real number, got str"),
        (dict(val_every=0), ValueError, "val_every must be an int >= 1"),
        (dict(val_every=2.5), TypeError, "val_every must be an int >= 1, got float 2.5"),
        (dict(grad_clip=0), ValueError, r"grad_clip must be a finite number.* 0.*got 0.0"),
        (dict(seed=1.5), TypeError, "seed must be an int, got float 1.5"),
        (dict(device=3), TypeError, "device must be a str or torch.device"),
        (dict(callback=3), TypeError, "callback must be callable"),
        (dict(train_data=5), TypeError, "train_data must have a .batch"),
        (dict(train_data=TensorDataset(torch.zeros(0, 3, 4, 4))), ValueError, "train_data is empty"),
        (dict(model="net"), TypeError, "model must be a torch.nn.Module, got str"),
        (dict(loss_fn="ce"), TypeError, "loss_fn must be callable or None, got str"),
        (dict(optimizer="adam", lr=None), TypeError, "optimizer must be a torch.optim.Optimizer"),
        (dict(train_data=[torch.zeros(2, 3, 4, 4)]), TypeError, r"train_data must yield \(x, y\) pairs, got Tensor"),
        (dict(train_data=[(torch.zeros(2, 3, 4, 4),) * 3]), ValueError,
         r"train_data must yield \(x, y\) pairs, got tuple of length 3"),
    ],
)
def test_argument_errors(kwargs, error, message):
    args = dict(model=tiny_model(), train_data=ArgmaxScenes(8), loss_fn=CE, steps=2, **FAST)
    args.update(kwargs)
    with pytest.raises(error, match=message):
        fit(**args)


def test_optimizer_and_lr_together_is_an_error():
    model = tiny_model()
    with pytest.raises(ValueError, match="either optimizer or lr"):
        fit(model, ArgmaxScenes(8), CE, 2, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), lr=0.1,
            device="cpu", progress=False)


def test_validating_during_training_does_not_change_the_training():
    # a DataLoader draws its base seed from the global generator, which dropout and augmentation also use:
    # validating every step must leave the training losses bit-identical to validating only at the end
    from torch.utils.data import DataLoader, TensorDataset

    def run(val_every):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Dropout2d(0.5), nn.Conv2d(8, 3, 1))
        images, masks = torch.rand(8, 3, 12, 12), torch.randint(0, 3, (8, 12, 12))
        val = DataLoader(TensorDataset(images, masks), batch_size=4, shuffle=True)
        train_data = DataLoader(TensorDataset(images, masks), batch_size=4, shuffle=True)
        return fit(model, train_data, CE, 6, val_data=val, val_every=val_every, progress=False, device="cpu",
                   num_classes=3, lr=1e-2)

    assert run(val_every=1).loss == run(val_every=None).loss
