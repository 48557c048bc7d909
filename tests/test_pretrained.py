"""Pretrained networks without real weights: segedu.zoo.pretrained, backbones' ``weights=``, segedu.pretrained.

Real weights are never fetched here. Stand-ins with the right names and shapes (torchvision's own models with
random weights, saved where the download would put them) check that the conversion, the loading and the
functions around them are right; the socket guard makes sure nothing reaches the network.
"""

from __future__ import annotations

import socket

import pytest
import torch
import torchvision
from torchvision.models.segmentation import deeplabv3_resnet50

from segedu import zoo
from segedu.data.voc import VOC_CLASSES, VOCSegmentation
from segedu.data.voc_mini import shapes_voc_mini
from segedu.data.transforms import eval_transforms
from segedu.models.backbones import resnet_backbone
from segedu.models.deeplab import DeepLabV3
from segedu.pretrained import (
    IMAGENET_MEAN, IMAGENET_STD, ImageNetNormalize, class_probabilities, deeplabv3_on_resnet, encoder_state_dict,
    finetune_vs_scratch, person_probability, torchvision_weights, with_imagenet_normalization,
)


@pytest.fixture(autouse=True)
def no_network(monkeypatch, tmp_path):
    connect = socket.socket.connect

    def guarded(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in ("127.0.0.1", "localhost", "::1"):
            raise AssertionError(f"a test tried to reach {address}: tests must stay offline")
        return connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    monkeypatch.setenv("SEGEDU_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))


@pytest.fixture(scope="module")
def fake_deeplab(tmp_path_factory):
    """torchvision's deeplabv3_resnet50 (random weights, with the auxiliary head as the real file has),
    saved under the real file name in a data folder."""
    torch.manual_seed(0)
    reference = deeplabv3_resnet50(weights=None, weights_backbone=None, aux_loss=True).eval()
    root = tmp_path_factory.mktemp("data")
    (root / "weights").mkdir()
    torch.save(reference.state_dict(), root / "weights" / "deeplabv3_resnet50_coco-cd0a2569.pth")
    return root, reference


def test_pretrained_equals_torchvisions_model(fake_deeplab):
    root, reference = fake_deeplab
    model = zoo.pretrained("deeplabv3_resnet50", root=root)
    assert isinstance(model, DeepLabV3) and not model.training and model.classes == VOC_CLASSES
    assert model.classes[15] == "person" and len(model.classes) == 21
    x = torch.rand(2, 3, 67, 75)
    with torch.no_grad():
        ours, theirs = model(x), reference(x)["out"]
    assert ours.shape == (2, 21, 67, 75)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)  # the same network, the same operations


def test_pretrained_never_fetches_unless_asked(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        zoo.pretrained("deeplabv3_resnet50", root=tmp_path)
    message = str(error.value)
    assert "nothing is downloaded unless asked" in message and "python -m segedu download deeplabv3_resnet50" in message
    assert "https://download.pytorch.org/models/deeplabv3_resnet50_coco-cd0a2569.pth" in message
    with pytest.raises(ValueError, match="name must be one of"):
        zoo.pretrained("fcn_resnet50")


def test_backbone_weights_by_name_from_the_data_folder(tmp_path):
    torch.manual_seed(1)
    resnet = torchvision.models.resnet18(weights=None)
    path = tmp_path / "weights" / "resnet18-f37072fd.pth"  # ResNet18_Weights.IMAGENET1K_V1's file name
    with pytest.raises(FileNotFoundError, match="python -m segedu download resnet18"):
        resnet_backbone("resnet18", 16, weights="IMAGENET1K_V1", root=tmp_path)
    path.parent.mkdir()
    torch.save(resnet.state_dict(), path)
    for weights in ("DEFAULT", "IMAGENET1K_V1", "ResNet18_Weights.IMAGENET1K_V1",
                    torchvision.models.ResNet18_Weights.IMAGENET1K_V1):
        encoder = resnet_backbone("resnet18", 16, weights=weights, root=tmp_path)
        assert torch.equal(encoder.stem[0].weight, resnet.conv1.weight)
        assert torch.equal(encoder.layer4[1].conv2.weight, resnet.layer4[1].conv2.weight)
    assert encoder.output_stride == 16 and encoder.layer4[0].conv1.stride == (1, 1)
    encoder = resnet_backbone("resnet18", 8, weights=resnet.state_dict())  # a state dict of one's own
    assert torch.equal(encoder.layer3[0].conv1.weight, resnet.layer3[0].conv1.weight)
    assert not torch.equal(resnet_backbone("resnet18", 16).stem[0].weight, resnet.conv1.weight)  # weights=None


def test_weights_names_are_checked():
    assert torchvision_weights("resnet50", "DEFAULT") == torchvision.models.ResNet50_Weights.IMAGENET1K_V2
    with pytest.raises(ValueError, match=r"weights must be one of \['DEFAULT', 'IMAGENET1K_V1'\] for resnet18"):
        torchvision_weights("resnet18", "IMAGENET1K_V2")
    with pytest.raises(ValueError, match="another model's weights"):
        torchvision_weights("resnet18", "ResNet50_Weights.IMAGENET1K_V1")
    with pytest.raises(TypeError, match="weights must be a torchvision weights name or enum"):
        torchvision_weights("resnet18", 3)
    with pytest.raises(ValueError, match="need a backbone in"):
        resnet_backbone("small", 16, weights="DEFAULT")
    assert encoder_state_dict("resnet18", {"a": torch.zeros(1)}) == {"a": torch.zeros(1)}


def test_imagenet_normalisation():
    x = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1).expand(2, 3, 4, 4) + torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(ImageNetNormalize()(x), torch.ones(2, 3, 4, 4))
    wrapped = with_imagenet_normalization(torch.nn.Identity())
    assert wrapped.state_dict() == {}  # constants, not weights
    with pytest.raises(ValueError, match="must have 3 channels"):
        wrapped(torch.rand(1, 1, 4, 4))


def test_person_probability_of_a_deeplab_v3_resnet50(fake_deeplab):
    root, reference = fake_deeplab
    model = zoo.pretrained(root=root).train()  # the function switches to eval and back
    image = torch.rand(3, 48, 40)
    p = person_probability(model, image)
    assert p.shape == (48, 40) and 0 <= p.min() and p.max() <= 1 and model.training
    with torch.no_grad():
        expected = reference(ImageNetNormalize()(image[None]))["out"].softmax(1)[0, 15]
    torch.testing.assert_close(p, expected, rtol=0, atol=1e-6)  # softmax of the same logits
    probabilities = class_probabilities(model, image[None].expand(2, -1, -1, -1), size=32)  # shorter side 32
    assert probabilities.shape == (2, 21, 48, 40)
    torch.testing.assert_close(probabilities.sum(1), torch.ones(2, 48, 40))  # float32 rounding
    same = class_probabilities(with_imagenet_normalization(model), image, normalize=False)
    torch.testing.assert_close(same[15], p)
    cats = torch.nn.Conv2d(3, 2, 1)
    cats.classes = ("background", "cat")
    with pytest.raises(ValueError, match="must predict a 'person' class"):
        person_probability(cats, image)
    with pytest.raises(ValueError, match="image must be 3-D or 4-D"):
        person_probability(model, torch.rand(40, 40))


def test_finetune_vs_scratch_trains_the_same_model_twice_at_one_budget():
    data = VOCSegmentation(shapes_voc_mini(), "train", eval_transforms(32))
    val = torch.utils.data.Subset(VOCSegmentation(shapes_voc_mini(), "val", eval_transforms(32)), range(4))
    torch.manual_seed(3)
    imagenet_stand_in = torchvision.models.resnet18(weights=None).state_dict()
    result = finetune_vs_scratch(data, val, len(data.classes), 2, weights=imagenet_stand_in, batch_size=4,
                                 lr=1e-12, aspp_channels=16, device="cpu")
    pretrained, scratch = result["pretrained"], result["scratch"]
    assert result["settings"]["steps"] == 2 and result["settings"]["weights"] == "a state dict"
    for run in (pretrained, scratch):
        assert len(run["loss"]) == 2 and run["val"]["images"] == 4 and not run["model"].training
    # lr 1e-12: the weights hardly move, so they still show where each run started
    conv1 = "1.backbone.stem.0.weight"
    torch.testing.assert_close(pretrained["model"].state_dict()[conv1], imagenet_stand_in["conv1.weight"],
                               rtol=0, atol=1e-9)  # 2 Adam steps of size <= lr
    assert not torch.allclose(scratch["model"].state_dict()[conv1], imagenet_stand_in["conv1.weight"])
    head = "1.classifier.4.weight"  # the same random head in both runs
    torch.testing.assert_close(pretrained["model"].state_dict()[head], scratch["model"].state_dict()[head],
                               rtol=0, atol=1e-9)


def test_finetune_vs_scratch_wants_the_weights_before_training(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m segedu download resnet18"):
        finetune_vs_scratch([], None, 2, 1, weights="DEFAULT", root=tmp_path)
    model = deeplabv3_on_resnet(3, "resnet18", aspp_channels=8)
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 3, 32, 32)
