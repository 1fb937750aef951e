"""LLaGA: templates on a hand-built graph, the tree Laplacian encoding, prompt assembly, the frozen LLM,
text features, data splits and bad input."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("torch_geometric")

from slimkit.core.errors import ConfigError, DataError, SlimkitError  # noqa: E402
from slimkit.graph.datasets import undirected  # noqa: E402
from slimkit.graph.llaga import (  # noqa: E402
    GRAPH_TOKEN,
    PAD,
    LlagaConfig,
    TextFeatureConfig,
    assemble_embeds,
    build_llaga,
    encode_example,
    evaluate_llaga,
    hashed_bag_of_words,
    hop_field_features,
    link_splits,
    load_llm,
    load_text_graph,
    nd_length,
    neighbor_detail_sequences,
    node_text_features,
    random_node_split,
    train_llaga,
    tree_laplacian_pe,
)
from slimkit.graph.llaga.model import match_class, read_yes_no  # noqa: E402
from slimkit.graph.llaga.prompts import collate  # noqa: E402
from slimkit.graph.llaga.templates import nd_token_features, tree_adjacency  # noqa: E402
from slimkit.models.tiny import tiny_model, tiny_tokenizer  # noqa: E402

# 0 - 1, 0 - 2, 0 - 3, 1 - 4: node 4 has one neighbour, node 0 three
EDGES = undirected(torch.tensor([[0, 0, 0, 1], [1, 2, 3, 4]]), 5)


# -- templates -----------------------------------------------------------------------------------------
def test_nd_length():
    assert nd_length(2, 10) == 111
    assert nd_length(2, 2) == 7
    assert nd_length(0, 5) == 1
    with pytest.raises(ConfigError, match="fanout"):
        nd_length(2, 0)


def test_nd_sequences_shape_and_placeholders():
    seq = neighbor_detail_sequences(EDGES, 5, [4, 0, 2], hops=2, fanout=2, seed=0)
    assert seq.shape == (3, 7) and seq.dtype == torch.long
    # node 4: slots 0 root, 1-2 its children, 3-4 children of slot 1, 5-6 children of slot 2
    s4 = seq[0].tolist()
    assert s4[0] == 4 and s4[1] == 1 and s4[2] == PAD  # one real neighbour, one placeholder
    assert sorted(s4[3:5]) == [0, 4]  # node 1's neighbours (exactly two: no sampling needed)
    assert s4[5:] == [PAD, PAD]  # a placeholder's children are placeholders
    s0 = seq[1].tolist()
    assert s0[0] == 0 and set(s0[1:3]) <= {1, 2, 3} and len(set(s0[1:3])) == 2  # 2 of 3, no replacement
    s2 = seq[2].tolist()  # node 2: neighbour 0 only; 0's children are 2 of {1, 2, 3}
    assert s2[:3] == [2, 0, PAD] and set(s2[3:5]) <= {1, 2, 3} and s2[5:] == [PAD, PAD]


def test_nd_sequences_seeded_and_batch_independent():
    a = neighbor_detail_sequences(EDGES, 5, [0, 4], hops=2, fanout=2, seed=3)
    b = neighbor_detail_sequences(EDGES, 5, [4, 0], hops=2, fanout=2, seed=3)
    assert torch.equal(a[0], b[1]) and torch.equal(a[1], b[0])
    draws = {
        tuple(neighbor_detail_sequences(EDGES, 5, [0], hops=1, fanout=2, seed=s)[0].tolist())
        for s in range(20)
    }
    assert len(draws) > 1  # the seed changes the sample


def test_nd_avoid_removes_the_other_endpoint():
    for seed in range(10):
        seq = neighbor_detail_sequences(EDGES, 5, [0], hops=1, fanout=3, seed=seed, avoid=[1])[0].tolist()
        assert seq[0] == 0 and 1 not in seq[1:] and sorted(seq[1:]) == [PAD, 2, 3]


def test_nd_token_features_zero_placeholders():
    x = torch.randn(5, 4)
    seq = neighbor_detail_sequences(EDGES, 5, [4], hops=2, fanout=2, seed=0)
    pe = tree_laplacian_pe(2, 2)[0]
    tokens, pad = nd_token_features(x, seq, pe)
    assert tokens.shape == (1, 7, 4 + 7)
    assert pad[0].tolist() == [v == PAD for v in seq[0].tolist()]
    assert torch.all(tokens[0, pad[0], :4] == 0)
    assert torch.equal(tokens[0, 0, :4], x[4]) and torch.equal(tokens[0, 1, :4], x[1])
    assert torch.allclose(tokens[0, :, 4:], pe)  # every slot carries its position's encoding


def test_tree_laplacian_pe_is_sym_normalised_eigenbasis():
    u, lam = tree_laplacian_pe(2, 3)
    n = nd_length(2, 3)
    a = tree_adjacency(2, 3)
    assert torch.equal(a, a.t()) and a.sum() == 2 * (n - 1)
    d = a.sum(1)
    lap = torch.eye(n, dtype=torch.float64) - a / torch.sqrt(d[:, None] * d[None, :])
    u64 = u.double()
    assert torch.allclose(u64.t() @ u64, torch.eye(n, dtype=torch.float64), atol=1e-5)  # orthonormal
    assert torch.allclose(lap @ u64, u64 * lam.double()[None, :], atol=1e-5)  # L u = λ u
    assert lam.min() > -1e-5 and lam.max() < 2 + 1e-5 and abs(float(lam[0])) < 1e-5
    assert torch.all(lam[1:] >= lam[:-1] - 1e-6)
    # sign fix: the first clearly non-zero entry of every eigenvector is positive, and it is deterministic
    for j in range(n):
        col = u[:, j]
        first = col[col.abs() > 1e-6][0]
        assert first > 0
    u2, _ = tree_laplacian_pe(2, 3)
    assert torch.equal(u, u2)


def test_hop_field_matches_dense_propagation():
    x = torch.randn(5, 3)
    h = hop_field_features(x, EDGES, hops=3)
    assert h.shape == (5, 4, 3)
    a = torch.zeros(5, 5)
    a[EDGES[0], EDGES[1]] = 1.0
    d = a.sum(1).rsqrt()
    a_hat = d[:, None] * a * d[None, :]
    ref = x
    for k in range(4):
        assert torch.allclose(h[:, k], ref, atol=1e-6)
        ref = a_hat @ ref


# -- prompts -------------------------------------------------------------------------------------------
def test_prompt_assembly_places_node_tokens_at_placeholders():
    tok = tiny_tokenizer()
    llm = tiny_model("llama", seed=0)
    embed = llm.get_input_embeddings()
    e1 = encode_example(tok, "Given <graph> and <graph>, linked?", "yes", 3)
    e2 = encode_example(tok, "Describe <graph>.", "a long answer here", 3)
    assert e1.num_graphs == 2 and e2.num_graphs == 1
    assert e1.ids.count(GRAPH_TOKEN) == 6 and e2.ids.count(GRAPH_TOKEN) == 3
    ids, labels, mask, pos = collate([e1, e2], pad_id=0)
    assert torch.all(labels[ids == GRAPH_TOKEN] == -100)  # graph slots are never trained on
    graph_tokens = torch.randn(9, embed.embedding_dim)
    emb = assemble_embeds(embed, ids, graph_tokens)
    slots = (ids == GRAPH_TOKEN).nonzero().tolist()
    for k, (b, t) in enumerate(slots):  # row-major: example 1's two graphs, then example 2's
        assert torch.equal(emb[b, t], graph_tokens[k])
    other = ids != GRAPH_TOKEN
    assert torch.equal(emb[other], embed(ids[other]))
    with pytest.raises(DataError, match="graph slots"):
        assemble_embeds(embed, ids, graph_tokens[:8])


def test_collate_left_padding_positions():
    tok = tiny_tokenizer()
    short = encode_example(tok, "<graph>", None, 2)
    long = encode_example(tok, "Tell me about <graph> please, in detail", None, 2)
    ids, _, mask, pos = collate([short, long], pad_id=0, left=True)
    n = len(short.ids)
    assert mask[0, -n:].all() and not mask[0, :-n].any()
    assert pos[0, -n:].tolist() == list(range(n)) and pos[1].tolist() == list(range(ids.size(1)))


def test_answer_parsing():
    names = ["Saspoia", "Sas", "Pimleia"]
    assert match_class(" Saspoia.", names) == 0 and match_class("sas", names) == 1
    assert match_class("nothing", names) == -1
    assert read_yes_no("Yes, they do") == 1 and read_yes_no("no") == 0 and read_yes_no("maybe") == -1


# -- data ----------------------------------------------------------------------------------------------
def test_world_text_graph_and_splits():
    g = load_text_graph("world:label=country", features=TextFeatureConfig(encoder="hash", dim=64))
    n = g.num_nodes
    assert g.x.shape == (n, 64) and len(g.texts) == n and len(g.class_names) == int(g.y.max()) + 1
    assert "hashed bag-of-words" in g.feature_source
    assert "was born in" in g.texts[0]  # a description from the facts, not just the name
    idx = torch.cat([g.train_idx, g.val_idx, g.test_idx])
    assert sorted(idx.tolist()) == list(range(n))
    assert abs(g.train_idx.numel() - 0.6 * n) <= 1 and abs(g.val_idx.numel() - 0.2 * n) <= 1
    links = g.links
    pos = torch.cat([links.train_pos, links.val_pos, links.test_pos], 1)
    edges = {tuple(e) for e in g.edge_index.t().tolist()}
    assert all((u, v) in edges and u < v for u, v in pos.t().tolist())
    assert pos.size(1) == g.edge_index.size(1) // 2 and len({tuple(p) for p in pos.t().tolist()}) == pos.size(
        1
    )
    for p, q in (
        (links.train_pos, links.train_neg),
        (links.val_pos, links.val_neg),
        (links.test_pos, links.test_neg),
    ):
        assert p.size(1) == q.size(1)
        assert not any((u, v) in edges for u, v in q.t().tolist())
    # the LP message-passing graph has exactly the training positives
    lp_edges = {tuple(e) for e in links.train_edge_index.t().tolist()}
    assert all((u, v) not in lp_edges for u, v in links.test_pos.t().tolist())
    assert len(lp_edges) == 2 * links.train_pos.size(1)


def test_random_node_split_seeded():
    a, b = random_node_split(50, 1), random_node_split(50, 1)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[0], random_node_split(50, 2)[0])


def test_link_splits_deterministic():
    g = load_text_graph("world", features=TextFeatureConfig(encoder="hash", dim=16))
    a, b = link_splits(g.edge_index, g.num_nodes, 5), link_splits(g.edge_index, g.num_nodes, 5)
    assert torch.equal(a.test_pos, b.test_pos) and torch.equal(a.train_neg, b.train_neg)


def test_hashed_bag_of_words():
    x = hashed_bag_of_words(["Alpha beta beta", "alpha BETA beta", "gamma"], 32)
    assert x.shape == (3, 32) and torch.allclose(x.norm(dim=1), torch.ones(3))
    assert torch.equal(x[0], x[1]) and not torch.equal(x[0], x[2])


def test_sentence_model_directory(tmp_path, monkeypatch):
    from transformers import BertConfig, BertModel

    monkeypatch.setenv("SLIMKIT_CACHE", str(tmp_path / "cache"))
    d = tmp_path / "sbert"
    cfg = BertConfig(
        vocab_size=512, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
    )
    torch.manual_seed(0)
    BertModel(cfg).save_pretrained(d)
    tiny_tokenizer().save_pretrained(d)
    texts = ["a city by the sea", "a person who works", "a city by the sea"]
    x, source = node_text_features(texts, TextFeatureConfig(encoder=str(d)))
    assert x.shape == (3, 16) and torch.allclose(x.norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.allclose(x[0], x[2]) and "sentence model" in source
    assert list((tmp_path / "cache" / "llaga-text-embeddings").glob("*.safetensors"))  # cached
    x2, _ = node_text_features(texts, TextFeatureConfig(encoder=str(d)))
    assert torch.equal(x, x2)


def test_auto_without_a_sentence_model_falls_back_to_hash(monkeypatch):
    monkeypatch.delenv("SLIMKIT_SENTENCE_MODEL", raising=False)
    monkeypatch.setattr("slimkit.graph.llaga.data.find_sentence_model", lambda: None)
    x, source = node_text_features(["one", "two"], TextFeatureConfig(dim=8))
    assert x.shape == (2, 8) and "no sentence model installed" in source


# -- bad input -----------------------------------------------------------------------------------------
def test_graph_without_text_is_refused():
    with pytest.raises(DataError, match="no node text"):
        load_text_graph("csbm:nodes=60,feature_dim=4")
    with pytest.raises(DataError, match="no node text"):
        node_text_features(None)


def test_class_count_mismatch_is_refused():
    with pytest.raises(DataError, match="2 class names given, but the labels have 4 classes"):
        load_text_graph("world", class_names=["a", "b"], features=TextFeatureConfig(encoder="hash"))
    with pytest.raises(DataError, match="distinct"):
        load_text_graph("world", class_names=["a", "a", "b", "c"], features=TextFeatureConfig(encoder="hash"))


def test_node_text_count_mismatch_is_refused(tmp_path):
    f = tmp_path / "texts.txt"
    f.write_text("one\ntwo\n")
    with pytest.raises(DataError, match="2 node texts for a graph of"):
        load_text_graph("world", texts=f, features=TextFeatureConfig(encoder="hash"))


def test_llm_directory_that_does_not_load(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(SlimkitError):
        load_llm(str(tmp_path))
    with pytest.raises(SlimkitError):
        load_llm(str(tmp_path / "missing"))


def test_sentence_model_directory_that_does_not_load(tmp_path):
    with pytest.raises(SlimkitError, match="config.json"):
        node_text_features(["x"], TextFeatureConfig(encoder=str(tmp_path)))


def test_config_validation():
    with pytest.raises(ConfigError, match="template"):
        LlagaConfig(template="xx")
    with pytest.raises(ConfigError, match="tasks"):
        LlagaConfig(tasks=("nc", "qa"))
    with pytest.raises(ConfigError, match="projector"):
        LlagaConfig(projector="3-layer")
    assert LlagaConfig().graph_len == 111 and LlagaConfig(template="ho").graph_len == 5
    cfg = LlagaConfig(tasks=("nc", "lp"), template="ho")
    assert LlagaConfig.from_json(cfg.to_json()) == cfg


def test_prompt_longer_than_the_llm_is_refused():
    g = load_text_graph("world", features=TextFeatureConfig(encoder="hash", dim=16))
    model = build_llaga(
        LlagaConfig(tasks=("lp",), fanout=12), g, tiny_model("llama", seed=0), tiny_tokenizer()
    )
    with pytest.raises(ConfigError, match="positions"):
        train_llaga(model, g)


# -- the frozen LLM --------------------------------------------------------------------------------------
@pytest.mark.parametrize("template,projector", [("ho", "linear"), ("nd", "2-layer-mlp")])
def test_training_changes_only_the_projector(template, projector):
    g = load_text_graph("world", features=TextFeatureConfig(encoder="hash", dim=32))
    llm = tiny_model("llama", seed=0)
    before = {k: v.clone() for k, v in llm.state_dict().items()}
    cfg = LlagaConfig(
        template=template,
        projector=projector,
        hops=1,
        fanout=4,
        tasks=("nc", "lp", "nd"),
        epochs=1,
        batch_size=32,
    )
    model = build_llaga(cfg, g, llm, tiny_tokenizer())
    proj_before = {k: v.clone() for k, v in model.projector.state_dict().items()}
    stats = train_llaga(model, g)
    assert stats.steps > 0 and all(torch.isfinite(torch.tensor(stats.losses)))
    assert stats.trainable_params == sum(p.numel() for p in model.projector.parameters())
    for k, v in llm.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in llm.parameters()) and not any(
        p.requires_grad for p in llm.parameters()
    )
    assert not llm.training
    assert any(not torch.equal(v, proj_before[k]) for k, v in model.projector.state_dict().items())
    res = evaluate_llaga(model, g, limit=4)
    assert set(res) == {"nc", "lp", "nd"}
    assert res["nc"]["n"] == 4 and 0.0 <= res["lp"]["f1"] <= 1.0 and 0.0 <= res["nd"]["rougeL"] <= 1.0


# -- the world graph with the default LLM ------------------------------------------------------------------
def test_world_node_classification_far_above_majority():
    """HO template, linear projector, the factworld default LLM (cached), 20 epochs: ~10 s."""
    from slimkit.graph.llaga import majority_accuracy

    g = load_text_graph("world:label=country")
    llm, tok = load_llm("default")
    model = build_llaga(LlagaConfig(template="ho", tasks=("nc",), epochs=20), g, llm, tok)
    train_llaga(model, g)
    res = evaluate_llaga(model, g)["nc"]
    majority = majority_accuracy(g)
    assert majority < 0.2
    assert res["accuracy"] >= 3 * majority and res["scored_accuracy"] >= 3 * majority, res
