"""The embedding network: export to a bundle and back, local pretrained weights."""

from __future__ import annotations

import numpy as np
import torch

from lookalike.bundle import BundleSpec, load_bundle, write_bundle
from lookalike.images import Preprocessing, open_rgb, preprocess
from lookalike.training import EmbeddingModel


def test_export_then_load_gives_the_training_models_embeddings(tmp_path, att_faces):

    model = EmbeddingModel("resnet10t", embedding_size=32)
    model.eval()
    spec = Preprocessing(image_size=48, mean=(0.4, 0.5, 0.6), std=(0.2, 0.3, 0.25))
    write_bundle(
        tmp_path, model, BundleSpec(backbone="resnet10t", embedding_size=32, threshold=0.5, preprocessing=spec)
    )
    images = [open_rgb(p) for p in sorted((att_faces / "s5").iterdir())[:7]]
    batch = torch.from_numpy(np.stack([preprocess(im, spec) for im in images]))
    with torch.no_grad():
        expected = model(batch).numpy()
    np.testing.assert_allclose(load_bundle(tmp_path).embed(images), expected, atol=1e-5)


def test_pretrained_accepts_a_local_weights_file(tmp_path):
    source = EmbeddingModel("test_resnet", 8)
    weights = tmp_path / "weights.pth"
    torch.save(source.backbone.state_dict(), weights)
    loaded = EmbeddingModel("test_resnet", 8, pretrained=str(weights))
    for key, value in source.backbone.state_dict().items():
        torch.testing.assert_close(loaded.backbone.state_dict()[key], value)
    checkpoint = tmp_path / "last.pt"  # a run's checkpoint: its backbone, not its head, seeds the new model
    torch.save({"model": source.state_dict(), "epoch": 3}, checkpoint)
    tuned = EmbeddingModel("test_resnet", 4, pretrained=str(checkpoint))
    for key, value in source.backbone.state_dict().items():
        torch.testing.assert_close(tuned.backbone.state_dict()[key], value)
