"""The BiSeNet face parser (PuLID's face input): the released weights' key layout, safe
loading, PuLID's label mask on hand-made labels, and PuLID's condition with a parser."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from sameface.errors import ModelNotFoundError, SamefaceError
from sameface.faces.bisenet import LABELS, PULID_DROPPED, BiSeNet, FaceParser, keep_mask

# Keys and shapes of facexlib's `parsing_bisenet.pth`, from its documented architecture
# (ResNet-18 context path, 128-channel refinement, 256-channel fusion, 19 classes).
RELEASE_KEYS = {
    "cp.resnet.conv1.weight": (64, 3, 7, 7),
    "cp.resnet.bn1.running_var": (64,),
    "cp.resnet.layer1.1.conv2.weight": (64, 64, 3, 3),
    "cp.resnet.layer2.0.downsample.0.weight": (128, 64, 1, 1),
    "cp.resnet.layer4.1.bn2.num_batches_tracked": (),
    "cp.arm16.conv.conv.weight": (128, 256, 3, 3),
    "cp.arm32.conv_atten.weight": (128, 128, 1, 1),
    "cp.arm32.bn_atten.bias": (128,),
    "cp.conv_head32.conv.weight": (128, 128, 3, 3),
    "cp.conv_avg.conv.weight": (128, 512, 1, 1),
    "ffm.convblk.conv.weight": (256, 256, 1, 1),
    "ffm.conv1.weight": (64, 256, 1, 1),
    "ffm.conv2.weight": (256, 64, 1, 1),
    "conv_out.conv.conv.weight": (256, 256, 3, 3),
    "conv_out.conv_out.weight": (19, 256, 1, 1),
    "conv_out16.conv_out.weight": (19, 64, 1, 1),
    "conv_out32.conv.bn.weight": (64,),
}


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Random weights in the release's layout, as a .pth file (what facexlib ships)."""
    torch.manual_seed(0)
    state = BiSeNet().state_dict()
    path = tmp_path_factory.mktemp("parser") / "parsing_bisenet.pth"
    torch.save(state, path)
    return path, state


def test_the_release_layout_loads_strictly(weights, tmp_path):
    _, state = weights
    assert len(state) == 191
    assert {k: tuple(state[k].shape) for k in RELEASE_KEYS} == RELEASE_KEYS
    assert len(LABELS) == 19 and LABELS[17] == "hair" and LABELS[16] == "cloth"
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "p.safetensors")
    for path in (weights[0], tmp_path / "p.safetensors"):
        parser = FaceParser.load(path)
        for k, v in parser.net.state_dict().items():
            assert torch.equal(v, state[k])


def test_pulids_mask_drops_background_clothes_hat_ears_and_neck():
    labels = torch.tensor([[0, 1, 17, 6], [16, 18, 10, 14]])
    assert keep_mask(labels).tolist() == [[0, 1, 1, 1], [0, 0, 1, 0]]
    assert set(PULID_DROPPED) == {0, 7, 8, 9, 14, 15, 16, 18}  # hair (17) stays, as in PuLID


def test_labels_and_masks_come_back_at_the_images_size(weights):
    parser = FaceParser.load(weights[0])
    images = torch.rand(2, 3, 112, 112)
    labels = parser.labels(images)
    assert labels.shape == (2, 112, 112) and labels.dtype == torch.int64
    assert int(labels.max()) < 19
    torch.testing.assert_close(parser.face_mask(images), keep_mask(labels))


def test_bad_parser_files_get_clear_errors(tmp_path):
    with pytest.raises(ModelNotFoundError, match=r"parsing_bisenet\.pth"):
        FaceParser.load(tmp_path / "missing.pth")
    other = tmp_path / "other.pth"
    torch.save({"conv_out.conv_out.weight": torch.zeros(19, 256, 1, 1)}, other)
    with pytest.raises(SamefaceError, match="not a BiSeNet face parser"):
        FaceParser.load(other)
    code = tmp_path / "code.pth"
    code.write_bytes(pickle.dumps(np.zeros(3), protocol=2))  # a pickle that is not weights only
    with pytest.raises(SamefaceError, match=r"weights only|not a state dict"):
        FaceParser.load(code)


def test_pulid_condition_uses_the_parser_instead_of_masks(obama, obama2):
    """With a parser the masks given are ignored: the parsed face follows the parser's labels."""
    from sameface.identity import Identity
    from sameface.methods.pulid import PuLIDConfig, PuLIDModel, tiny_clip_vision
    from sameface.models import tiny_base_model

    class Fixed:
        """A parser that keeps a fixed region."""

        def __init__(self, keep: torch.Tensor):
            self.keep, self.name = keep, "fixed"

        def face_mask(self, images):
            return self.keep.expand(images.shape[0], -1, -1).float()

    ident = Identity.from_images([obama, obama2], square_size=64, mask_method="landmarks")
    small = {"clip_vision": "tiny-random", "vit_layers": (1, 2, 4), "encoder_dim": 32}
    small |= {"heads": 2, "dim_head": 16, "mlp_dim": 32, "depth_per_layer": 1}
    base, masks = tiny_base_model("sd1"), np.zeros((2, 112, 112), np.uint8)
    with PuLIDModel(base, PuLIDConfig(**small), vision=tiny_clip_vision()) as model:
        plain, _ = model.condition(ident.aligned, masks, ident.embeddings)
        model.face_parser = Fixed(torch.ones(112, 112))
        parsed, _ = model.condition(ident.aligned, masks, ident.embeddings)
        assert not torch.allclose(plain, parsed)  # the all-white input is gone
        ones = np.full((2, 112, 112), 255, np.uint8)
        model.face_parser = None
        torch.testing.assert_close(
            model.condition(ident.aligned, ones, ident.embeddings)[0], parsed
        )
