"""LLaGA: a trainable projector in front of a frozen causal LM; mixed-task training and evaluation.

LLaGA — "LLaGA: Large Language and Graph Assistant" (Chen et al., ICML 2024, arXiv 2402.08170).
A node becomes a sequence of feature vectors (:mod:`~slimkit.graph.llaga.templates`), a projector
maps each to the LLM's embedding width,

    linear:       h = W x + b                                   [.., D] -> [.., H]
    2-layer-mlp:  h = W₂ GELU(W₁ x + b₁) + b₂                   (LLaGA's general model)

and the projected tokens take the place of the ``<graph>`` placeholders of a prompt
(:mod:`~slimkit.graph.llaga.prompts`). Placeholder (padding) slots of the ND template are zeroed
*after* the projector, as LLaGA's ``encode_graphs`` does. The LLM is frozen (``requires_grad_(False)``,
eval mode): only the projector trains, on the next-token loss of the answers, with the tasks of
``tasks`` mixed in every epoch. Inputs: ND ``D = F + L`` (features and the slot's Laplacian
encoding), HO ``D = F``.

Evaluation generates greedily and matches strings, as LLaGA's ``eval_res.py`` does: node
classification is right when the answer starts with the true class name (the longest matching
name wins); link prediction reads ``yes`` / ``no`` (accuracy and F1 of ``yes``); node description
is scored by ROUGE-L F against the node's description. Beside these, ``scored_*`` metrics pick the
candidate answer (class name; ``yes``/``no``, as LLaGA's ``lprank`` reads the yes/no logits) with the
highest log-likelihood, ``argmax_c Σ_t log p(a_c,t | prompt, a_c,<t)``: what the node tokens make the
LLM believe, even when a small LM does not produce the exact answer string.
"""

from __future__ import annotations

import inspect
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from slimkit.core.config import Config, check_choice, check_range
from slimkit.core.errors import ConfigError, DataError
from slimkit.graph.llaga.data import TextGraph
from slimkit.graph.llaga.prompts import (
    IGNORE,
    PROMPT_STYLES,
    TASKS,
    Encoded,
    assemble_embeds,
    collate,
    encode_example,
    nd_answer,
    resolve_style,
    task_prompt,
)
from slimkit.graph.llaga.templates import (
    hop_field_features,
    nd_length,
    nd_token_features,
    neighbor_detail_sequences,
    tree_laplacian_pe,
)
from slimkit.graph.metrics import link_ranking_metrics

TEMPLATES = ("nd", "ho")
PROJECTORS = ("linear", "2-layer-mlp")
MAX_SEED = 2**32 - 1
ANSWER_EOS = ("auto", "on", "off")


@dataclass(frozen=True, kw_only=True)
class LlagaConfig(Config):
    """LLaGA — "LLaGA: Large Language and Graph Assistant" (arXiv 2402.08170): templates, projector, training.

    Attributes:
        template (str): ``nd`` (Neighborhood Detail) or ``ho`` (Hop-Field Overview). Default: ``nd``.
        hops (int): ND tree depth. Default: 2 (the paper's).
        fanout (int): ND children per node. Default: 10 (the paper's; 111 tokens per node).
        ho_hops (int): HO propagation steps (``ho_hops + 1`` tokens). Default: 4 (the reference's).
        projector (str): ``linear`` (LLaGA's classification expert) or ``2-layer-mlp``. Default: ``linear``.
        tasks (tuple[str, ...]): trained tasks, mixed every epoch: ``nc``, ``lp``, ``nd``. Default: ``("nc",)``.
        epochs (int): passes over the mixed training examples. Default: 30 (LLaGA trains 1 epoch on
            graphs of 10⁴–10⁶ nodes; the 138-node world needs many passes).
        batch_size (int): examples per step. Default: 16 (the paper's).
        lr (float): AdamW learning rate of the projector. Default: 1e-2, tuned on the world graph (the
            reference script uses 2e-3 for one epoch over 10⁴–10⁶ nodes; the paper text says 2e-5).
        warmup (float): share of steps of linear warm-up before the cosine decay. Default: 0.03.
        weight_decay (float): AdamW decay. Default: 0.0.
        max_new_tokens (int): answer budget for nc / lp at evaluation. Default: 12.
        nd_max_new_tokens (int): answer budget for nd at evaluation. Default: 48.
        prompt (str): ``auto``, ``paper`` or ``short`` (see :mod:`~slimkit.graph.llaga.prompts`;
            ``auto``: ``paper`` for a tokenizer with a chat template, else ``short``). Default: ``auto``.
        answer_eos (str): whether the answer is trained to end with the tokenizer's EOS: ``on``,
            ``off`` or ``auto`` (``on`` for a tokenizer with a chat template — an instruction-tuned
            LM ends its turn with EOS, as Vicuna's ``</s>`` in LLaGA — else ``off``: a plain LM such
            as the factworld model never saw EOS in pretraining, its frozen head cannot learn to emit
            it, and the irreducible EOS loss (~6.4 nats per answer) swamps the answer's gradient).
            Without EOS a generated answer ends at the first newline. Default: ``auto``.
        seed (int): projector initialisation, example order and training neighbour samples. Default: 0.
    """

    template: str = "nd"
    hops: int = 2
    fanout: int = 10
    ho_hops: int = 4
    projector: str = "linear"
    tasks: tuple[str, ...] = ("nc",)
    epochs: int = 30
    batch_size: int = 16
    lr: float = 1e-2
    warmup: float = 0.03
    weight_decay: float = 0.0
    max_new_tokens: int = 12
    nd_max_new_tokens: int = 48
    prompt: str = "auto"
    answer_eos: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("template", self.template, TEMPLATES)
        check_range("hops", self.hops, 1, 8)
        check_range("fanout", self.fanout, 1, 1000)
        nd_length(self.hops, self.fanout)  # raises when the tree is absurdly large
        check_range("ho_hops", self.ho_hops, 0, 64)
        check_choice("projector", self.projector, PROJECTORS)
        if not isinstance(self.tasks, tuple) or not self.tasks:
            raise ConfigError(f"tasks must be a non-empty tuple of {list(TASKS)}, got {self.tasks!r}")
        for t in self.tasks:
            check_choice("tasks", t, TASKS)
        if len(set(self.tasks)) != len(self.tasks):
            raise ConfigError(f"tasks repeat an entry: {self.tasks}")
        check_range("epochs", self.epochs, 1, 10_000)
        check_range("batch_size", self.batch_size, 1, 4096)
        check_range("lr", self.lr, 0.0, 10.0, lo_inclusive=False)
        check_range("warmup", self.warmup, 0.0, 1.0)
        check_range("weight_decay", self.weight_decay, 0.0, None)
        check_range("max_new_tokens", self.max_new_tokens, 1, 4096)
        check_range("nd_max_new_tokens", self.nd_max_new_tokens, 1, 4096)
        check_choice("prompt", self.prompt, PROMPT_STYLES)
        check_choice("answer_eos", self.answer_eos, ANSWER_EOS)
        check_range("seed", self.seed, 0, MAX_SEED)

    @property
    def graph_len(self) -> int:
        """Tokens per node sequence: ``(k^{H+1} − 1)/(k − 1)`` for ND, ``H + 1`` for HO."""
        return nd_length(self.hops, self.fanout) if self.template == "nd" else self.ho_hops + 1


def uses_answer_eos(cfg: LlagaConfig, tokenizer: Any) -> bool:
    """Whether answers end with EOS in training (``answer_eos``; ``auto``: the tokenizer has a chat template)."""
    if tokenizer.eos_token_id is None or cfg.answer_eos == "off":
        return False
    return cfg.answer_eos == "on" or bool(getattr(tokenizer, "chat_template", None))


def parse_tasks(text: str) -> tuple[str, ...]:
    """``"nc,lp"`` → ``("nc", "lp")``; validated by :class:`LlagaConfig`."""
    return tuple(t.strip() for t in text.split(",") if t.strip())


def build_projector(kind: str, in_dim: int, out_dim: int) -> nn.Module:
    """LLaGA's ``build_graph_projector``: ``linear`` or ``2-layer-mlp`` (Linear, GELU, Linear)."""
    if kind == "linear":
        return nn.Linear(in_dim, out_dim)
    if kind == "2-layer-mlp":
        return nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))
    raise ConfigError(f"projector={kind!r} is not one of {list(PROJECTORS)}")


def answer_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Next-token loss with every example weighted equally: the mean over examples of the mean over
    its answer tokens (targets −100 are ignored), ``logits [B, T, V]``, ``targets [B, T]`` -> scalar.

    A plain token mean would let an ``nd`` description (~40 tokens) outweigh an ``nc`` class name
    (1–4 tokens) tenfold when the tasks are mixed; LLaGA's tasks are meant to count per example.
    """
    keep = targets != IGNORE
    tok = nn.functional.cross_entropy(
        logits.reshape(-1, logits.size(-1)), targets.clamp_min(0).reshape(-1), reduction="none"
    ).view_as(targets)
    count = keep.sum(1)
    per_example = (tok * keep).sum(1) / count.clamp_min(1)
    has = count > 0
    if not bool(has.any()):
        return logits.sum() * 0.0
    return per_example[has].mean()


# -- node sequences ----------------------------------------------------------------------------------
class NodeEncoder:
    """Node-sequence inputs of one graph under one template: ``tokens(nodes) -> ([B, G, D], pad [B, G])``.

    ``edge_index`` is the graph the sequences see (the training-edge graph for link prediction).
    """

    def __init__(self, cfg: LlagaConfig, x: Tensor, edge_index: Tensor) -> None:
        self.cfg, self.x, self.edge_index = cfg, x, edge_index
        if cfg.template == "nd":
            self.pe = tree_laplacian_pe(cfg.hops, cfg.fanout)[0]
            self.in_dim = x.size(1) + self.pe.size(1)
        else:
            self.hop = hop_field_features(x, edge_index, cfg.ho_hops)  # [N, H+1, F], computed once
            self.in_dim = x.size(1)

    def tokens(self, nodes: list[int], *, seed: int, avoid: list[int] | None = None) -> tuple[Tensor, Tensor]:
        if self.cfg.template == "ho":
            feats = self.hop[torch.tensor(nodes, dtype=torch.long)]
            return feats, torch.zeros(feats.shape[:2], dtype=torch.bool)
        seq = neighbor_detail_sequences(
            self.edge_index,
            self.x.size(0),
            nodes,
            hops=self.cfg.hops,
            fanout=self.cfg.fanout,
            seed=seed,
            avoid=avoid,
        )
        return nd_token_features(self.x, seq, self.pe)


@dataclass
class Example:
    task: str
    encoded: Encoded
    nodes: list[int]  # the centre node of each <graph>, in prompt order
    avoid: list[int] | None  # lp: each centre's other endpoint (kept out of its ND sequence)
    target: str  # the answer text (for evaluation)
    label: int  # nc: the class; lp: 1 = edge, 0 = not


class Llaga(nn.Module):
    """A frozen causal LM with a trainable projector in front (see the module docstring)."""

    def __init__(self, cfg: LlagaConfig, llm: nn.Module, tokenizer: Any, in_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.llm = llm
        self.tokenizer = tokenizer
        llm.requires_grad_(False)
        llm.eval()
        hidden = llm.get_input_embeddings().embedding_dim
        g = torch.random.fork_rng()
        with g:
            torch.manual_seed(cfg.seed)
            self.projector = build_projector(cfg.projector, in_dim, hidden)
        self.in_dim = in_dim
        param = next(llm.parameters())
        self.projector.to(device=param.device, dtype=torch.float32)

    def train(self, mode: bool = True) -> Llaga:  # the LLM stays in eval mode: it is frozen
        self.training = mode
        self.projector.train(mode)
        self.llm.eval()
        return self

    @property
    def pad_id(self) -> int:
        tok = self.tokenizer
        return tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)

    @property
    def max_positions(self) -> int | None:
        return getattr(self.llm.config, "max_position_embeddings", None)

    def graph_embeds(self, feats: Tensor, pad: Tensor) -> Tensor:
        """Project ``[S, D]`` slot inputs to ``[S, H]`` and zero the placeholder slots."""
        dev = next(self.llm.parameters()).device
        dtype = self.llm.get_input_embeddings().weight.dtype
        h = self.projector(feats.to(dev, torch.float32))
        return h.masked_fill(pad.to(dev).unsqueeze(-1), 0.0).to(dtype)

    def inputs(self, ids: Tensor, feats: Tensor, pad: Tensor) -> Tensor:
        dev = next(self.llm.parameters()).device
        return assemble_embeds(self.llm.get_input_embeddings(), ids.to(dev), self.graph_embeds(feats, pad))

    def loss(
        self, ids: Tensor, labels: Tensor, mask: Tensor, pos: Tensor, feats: Tensor, pad: Tensor
    ) -> Tensor:
        logits, targets = self.answer_logits(ids, labels, mask, pos, feats, pad)
        return answer_loss(logits.float(), targets)

    def answer_logits(
        self, ids: Tensor, labels: Tensor, mask: Tensor, pos: Tensor, feats: Tensor, pad: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Next-token logits ``[B, K, V]`` and their targets ``[B, K]`` at the K columns that predict an
        answer token in some row of the batch (targets −100 elsewhere).

        Only those columns go through the LM head: an nc or lp answer is 1–5 of a ~250-token prompt,
        and SmolLM2's 49,152 × 576 head is a fifth of its forward FLOPs at every column. Through
        ``logits_to_keep`` where the model takes it (transformers' causal LMs), else sliced after.
        """
        dev = next(self.llm.parameters()).device
        emb = self.inputs(ids, feats, pad)
        # column t's logits predict token t + 1
        cols = (labels[:, 1:] != IGNORE).any(0).nonzero().squeeze(1)
        targets = labels[:, 1:][:, cols].to(dev)
        cols = cols.to(dev)
        kwargs = {"inputs_embeds": emb, "attention_mask": mask.to(dev), "position_ids": pos.to(dev)}
        if self._takes_logits_to_keep:
            return self.llm(**kwargs, logits_to_keep=cols).logits, targets
        return self.llm(**kwargs).logits[:, cols], targets

    @property
    def _takes_logits_to_keep(self) -> bool:
        return "logits_to_keep" in inspect.signature(self.llm.forward).parameters

    @torch.no_grad()
    def generate(
        self, ids: Tensor, mask: Tensor, pos: Tensor, feats: Tensor, pad: Tensor, max_new: int
    ) -> list[str]:
        """Greedy answers of left-padded prompts (KV cache), decoded, up to EOS or ``max_new`` tokens."""
        dev = next(self.llm.parameters()).device
        emb = self.inputs(ids, feats, pad)
        mask, pos = mask.to(dev), pos.to(dev)
        eos = self.tokenizer.eos_token_id
        out_ids: list[Tensor] = []
        done = torch.zeros(ids.size(0), dtype=torch.bool, device=dev)
        past = None
        step_pos = pos[:, -1:]
        for _ in range(max_new):
            out = self.llm(
                inputs_embeds=emb, attention_mask=mask, position_ids=pos, past_key_values=past, use_cache=True
            )
            past = out.past_key_values
            nxt = out.logits[:, -1].argmax(-1)
            if eos is not None:
                nxt = nxt.masked_fill(done, eos)
                done |= nxt == eos
            out_ids.append(nxt)
            if bool(done.all()):
                break
            emb = self.llm.get_input_embeddings()(nxt).unsqueeze(1)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            step_pos = step_pos + 1
            pos = step_pos
        gen = torch.stack(out_ids, dim=1).cpu()
        texts = []
        for row in gen.tolist():
            if eos is not None and eos in row:
                row = row[: row.index(eos)]
            # every answer is one line; a plain LM trained without EOS (answer_eos off) goes on past it
            texts.append(self.tokenizer.decode(row, skip_special_tokens=True).strip().split("\n")[0].strip())
        return texts


# -- examples ------------------------------------------------------------------------------------------
def build_examples(
    cfg: LlagaConfig, graph: TextGraph, tokenizer: Any, task: str, split: str, *, with_answer: bool
) -> list[Example]:
    """The examples of one task on one split (``train`` / ``val`` / ``test``)."""
    g_len = cfg.graph_len
    style = resolve_style(cfg.prompt, tokenizer)
    eos = uses_answer_eos(cfg, tokenizer)
    out: list[Example] = []
    if task in ("nc", "nd"):
        idx = getattr(graph, f"{split}_idx").tolist()
        for v in idx:
            label = int(graph.y[v])
            prompt = task_prompt(task, style, graph.class_names, graph.name)
            if task == "nc":
                target = graph.class_names[label]
            else:
                target = nd_answer(graph.class_names[label], graph.texts[v])
            enc = encode_example(tokenizer, prompt, target if with_answer else None, g_len, style, eos=eos)
            out.append(Example(task, enc, [v], None, target, label))
        return out
    if task != "lp":
        raise ConfigError(f"task {task!r} is not one of {list(TASKS)}")
    links = graph.links
    for pairs, label in ((getattr(links, f"{split}_pos"), 1), (getattr(links, f"{split}_neg"), 0)):
        target = "yes" if label else "no"
        for u, v in pairs.t().tolist():
            prompt = task_prompt("lp", style, graph.class_names, graph.name)
            enc = encode_example(tokenizer, prompt, target if with_answer else None, g_len, style, eos=eos)
            out.append(Example("lp", enc, [u, v], [v, u], target, label))
    return out


def _check_length(model: Llaga, examples: list[Example], extra: int) -> None:
    limit = model.max_positions
    if limit is None or not examples:
        return
    longest = max(len(e.encoded.ids) for e in examples) + extra
    if longest > limit:
        raise ConfigError(
            f"prompts of {longest} tokens exceed the LLM's {limit} positions "
            f"(template {model.cfg.template} has {model.cfg.graph_len} tokens per node); "
            "use fewer --hops / a smaller --fanout, or the ho template"
        )


def _batch_inputs(
    examples: list[Example], encoders: dict[str, NodeEncoder], seed: int
) -> tuple[Tensor, Tensor]:
    feats, pads = [], []
    for e in examples:
        enc = encoders["lp" if e.task == "lp" else "node"]
        f, p = enc.tokens(e.nodes, seed=seed, avoid=e.avoid)
        feats.append(f.reshape(-1, f.size(-1)))
        pads.append(p.reshape(-1))
    return torch.cat(feats), torch.cat(pads)


def make_encoders(cfg: LlagaConfig, graph: TextGraph) -> dict[str, NodeEncoder]:
    """``node``: sequences on the full graph (nc, nd); ``lp``: on the training-edge graph."""
    return {
        "node": NodeEncoder(cfg, graph.x, graph.edge_index),
        "lp": NodeEncoder(cfg, graph.x, graph.links.train_edge_index),
    }


@dataclass
class TrainStats:
    steps: int
    seconds: float
    losses: list[float] = field(default_factory=list)  # mean loss per epoch
    trainable_params: int = 0
    frozen_params: int = 0


def train_llaga(model: Llaga, graph: TextGraph) -> TrainStats:
    """Train the projector on the training split of ``graph`` (tasks mixed and shuffled every epoch).

    ND neighbour samples are redrawn every epoch (seed ``cfg.seed·10⁴ + epoch``); evaluation uses
    fixed samples, so a trained model's scores are a function of its seeds.
    """
    cfg = model.cfg
    if _input_dim(cfg, graph) != model.in_dim:
        raise DataError(
            f"graph features give {_input_dim(cfg, graph)} inputs, the projector takes {model.in_dim}"
        )
    encoders = make_encoders(cfg, graph)
    examples = [
        ex
        for task in cfg.tasks
        for ex in build_examples(cfg, graph, model.tokenizer, task, "train", with_answer=True)
    ]
    if not examples:
        raise DataError("no training examples: the training split is empty")
    _check_length(model, examples, 0)
    params = [p for p in model.projector.parameters()]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(examples) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    warm = max(1, round(cfg.warmup * total)) if cfg.warmup > 0 else 0

    def lr_at(step: int) -> float:  # linear warm-up, then cosine to zero
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    rng = random.Random(cfg.seed)
    stats = TrainStats(
        steps=0,
        seconds=0.0,
        trainable_params=sum(p.numel() for p in params),
        frozen_params=sum(p.numel() for p in model.llm.parameters()),
    )
    start = time.perf_counter()
    model.train()
    for epoch in range(cfg.epochs):
        order = examples[:]
        rng.shuffle(order)
        total_loss = 0.0
        for i in range(0, len(order), cfg.batch_size):
            batch = order[i : i + cfg.batch_size]
            ids, labels, mask, pos = collate([e.encoded for e in batch], model.pad_id)
            feats, pad = _batch_inputs(batch, encoders, seed=cfg.seed * 10_000 + epoch + 1)
            loss = model.loss(ids, labels, mask, pos, feats, pad)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            stats.steps += 1
            total_loss += loss.item() * len(batch)
        stats.losses.append(total_loss / len(order))
    model.eval()
    stats.seconds = time.perf_counter() - start
    return stats


def _input_dim(cfg: LlagaConfig, graph: TextGraph) -> int:
    return graph.x.size(1) + (nd_length(cfg.hops, cfg.fanout) if cfg.template == "nd" else 0)


def match_class(answer: str, class_names: list[str]) -> int:
    """The class whose name the answer starts with (case-insensitive; longest name first), else −1."""
    a = answer.strip().lower()
    for k in sorted(range(len(class_names)), key=lambda k: -len(class_names[k])):
        if a.startswith(class_names[k].lower()):
            return k
    return -1


def read_yes_no(answer: str) -> int:
    a = answer.strip().lower()
    return 1 if a.startswith("yes") else 0 if a.startswith("no") else -1


@torch.no_grad()
def evaluate_llaga(
    model: Llaga,
    graph: TextGraph,
    tasks: tuple[str, ...] | None = None,
    split: str = "test",
    *,
    batch_size: int = 32,
    eval_seed: int = 0,
    limit: int | None = None,
    sentence_model: str | Path | None = "auto",
) -> dict[str, dict[str, float]]:
    """Per task: ``nc`` accuracy, ``lp`` accuracy, F1 and ranking (AUC, Hits@K), ``nd`` ROUGE-L (F),
    label accuracy (the description's "This is a {class} node." prefix) and, when a sentence model
    is available (``sentence_model``: ``"auto"`` finds the installed one, a directory, or None for
    none), ``sbert_score``: the mean cosine similarity of the generated and reference descriptions'
    sentence embeddings, as LLaGA's ``eval_res.py`` scores nd. Each task has ``n``."""
    check_choice("split", split, ("train", "val", "test"))
    cfg = model.cfg
    if _input_dim(cfg, graph) != model.in_dim:
        raise DataError(
            f"graph features give {_input_dim(cfg, graph)} inputs, the projector takes {model.in_dim}"
        )
    encoders = make_encoders(cfg, graph)
    model.eval()
    results: dict[str, dict[str, float]] = {}
    for task in tasks or cfg.tasks:
        examples = build_examples(cfg, graph, model.tokenizer, task, split, with_answer=False)
        if limit is not None:
            examples = examples[:limit]
        max_new = cfg.nd_max_new_tokens if task == "nd" else cfg.max_new_tokens
        _check_length(model, examples, max_new)
        answers: list[str] = []
        for i in range(0, len(examples), batch_size):
            batch = examples[i : i + batch_size]
            ids, _, mask, pos = collate([e.encoded for e in batch], model.pad_id, left=True)
            feats, pad = _batch_inputs(batch, encoders, seed=eval_seed)
            answers += model.generate(ids, mask, pos, feats, pad, max_new)
        results[task] = score(task, examples, answers, graph.class_names)
        if task == "nd":
            sbert = sbert_score([e.target for e in examples], answers, sentence_model)
            if sbert is not None:
                results[task]["sbert_score"] = sbert
        if task in ("nc", "lp"):
            results[task].update(
                scored_metrics(model, cfg, graph, task, examples, encoders, eval_seed, batch_size)
            )
    return results


@torch.no_grad()
def answer_logprobs(model: Llaga, encoded: list[Encoded], feats: Tensor, pad: Tensor) -> Tensor:
    """``[B]`` summed log-probability of each example's labelled (answer) tokens."""
    ids, labels, mask, pos = collate(encoded, model.pad_id)
    logits, tgt = model.answer_logits(ids, labels, mask, pos, feats, pad)
    logp = torch.log_softmax(logits.float(), dim=-1)
    keep = tgt != IGNORE
    tok_lp = logp.gather(-1, tgt.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    return (tok_lp * keep).sum(1).cpu()


def scored_metrics(
    model: Llaga,
    cfg: LlagaConfig,
    graph: TextGraph,
    task: str,
    examples: list[Example],
    encoders: dict[str, NodeEncoder],
    eval_seed: int,
    batch_size: int,
) -> dict[str, float]:
    """``scored_accuracy`` (and for lp ``scored_f1``): the most likely candidate answer per example.

    For lp also LLaGA's ``lprank``: ``auc`` and ``hits@K`` (:mod:`slimkit.graph.metrics`) of the test
    pairs ranked by ``log p(yes) − log p(no)``, positives against negatives.
    """
    style = resolve_style(cfg.prompt, model.tokenizer)
    cands = graph.class_names if task == "nc" else ["no", "yes"]
    prompt = task_prompt(task, style, graph.class_names, graph.name)
    cand_enc = [encode_example(model.tokenizer, prompt, c, cfg.graph_len, style, eos=False) for c in cands]
    per = max(1, batch_size // len(cands))
    preds: list[int] = []
    log_odds: list[float] = []
    for i in range(0, len(examples), per):
        batch = examples[i : i + per]
        feats, pad = _batch_inputs(batch, encoders, seed=eval_seed)
        g = feats.size(0) // len(batch)  # slots per example
        rep_f = feats.view(len(batch), g, -1).repeat_interleave(len(cands), 0).reshape(-1, feats.size(-1))
        rep_p = pad.view(len(batch), g).repeat_interleave(len(cands), 0).reshape(-1)
        lp = answer_logprobs(model, cand_enc * len(batch), rep_f, rep_p).view(len(batch), len(cands))
        preds += lp.argmax(1).tolist()
        if task == "lp":
            log_odds += (lp[:, 1] - lp[:, 0]).tolist()
    gold = [e.label for e in examples]
    n = len(examples)
    acc = sum(p == y for p, y in zip(preds, gold, strict=True)) / max(1, n)
    if task == "nc":
        return {"scored_accuracy": acc}
    tp = sum(p == 1 and y == 1 for p, y in zip(preds, gold, strict=True))
    wrong = sum(p != y for p, y in zip(preds, gold, strict=True))
    out = {"scored_accuracy": acc, "scored_f1": 2 * tp / max(1, 2 * tp + wrong)}
    # lprank: rank the pairs by the log-odds of "yes" over "no" (cands = ["no", "yes"])
    odds = torch.tensor(log_odds)
    y = torch.tensor(gold, dtype=torch.bool)
    if bool(y.any()) and bool((~y).any()):
        out.update(link_ranking_metrics(odds[y], odds[~y]))
    return out


def score(task: str, examples: list[Example], answers: list[str], class_names: list[str]) -> dict[str, float]:
    n = len(examples)
    if task == "nc":
        right = sum(match_class(a, class_names) == e.label for e, a in zip(examples, answers, strict=True))
        return {"accuracy": right / max(1, n), "n": n}
    if task == "lp":
        pred = [read_yes_no(a) for a in answers]
        gold = [e.label for e in examples]
        tp = sum(p == 1 and g == 1 for p, g in zip(pred, gold, strict=True))
        fp = sum(p == 1 and g == 0 for p, g in zip(pred, gold, strict=True))
        fn = sum(p != 1 and g == 1 for p, g in zip(pred, gold, strict=True))
        acc = sum(p == g for p, g in zip(pred, gold, strict=True)) / max(1, n)
        f1 = 2 * tp / max(1, 2 * tp + fp + fn)
        return {"accuracy": acc, "f1": f1, "n": n}
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    rouge = [scorer.score(e.target, a)["rougeL"].fmeasure for e, a in zip(examples, answers, strict=True)]
    prefix = [
        a.lower().startswith(f"this is a {class_names[e.label].lower()} node")
        for e, a in zip(examples, answers, strict=True)
    ]
    return {"rougeL": sum(rouge) / max(1, n), "label_accuracy": sum(prefix) / max(1, n), "n": n}


def sbert_score(references: list[str], answers: list[str], sentence_model: str | Path | None) -> float | None:
    """Mean ``cos(e(reference), e(answer))`` with ``e`` a sentence model's L2-normalised mean-pooled
    embedding (``[n, d]`` each); None when no sentence model is given or (``"auto"``) installed."""
    from slimkit.graph.llaga.data import find_sentence_model, sentence_embeddings, sentence_model_path

    if sentence_model is None or not references:
        return None
    path = find_sentence_model() if sentence_model == "auto" else sentence_model_path(str(sentence_model))
    if path is None:
        return None
    # an empty answer embeds as the [CLS]/[SEP] pair only: a low but defined similarity
    emb = sentence_embeddings(list(references) + list(answers), path, cache=False)
    ref, ans = emb[: len(references)], emb[len(references) :]
    return float((ref * ans).sum(-1).mean())


def majority_accuracy(graph: TextGraph, split: str = "test") -> float:
    """Accuracy of always answering the most frequent training class."""
    train_y = graph.y[graph.train_idx]
    top = int(torch.bincount(train_y).argmax())
    y = graph.y[getattr(graph, f"{split}_idx")]
    return float((y == top).float().mean())


# -- build, save, load -----------------------------------------------------------------------------------
DEFAULT_LLM = "default"


def load_llm(path: str, *, device: str = "cpu") -> tuple[nn.Module, Any]:
    """A causal LM and its tokenizer: ``"default"`` (the factworld model, trained and cached on first
    use), a named offline model (``smollm2-135m``) or a model directory :func:`slimkit.load_model` reads."""
    from slimkit.models.loading import load_model

    if path == DEFAULT_LLM:
        from slimkit.models.default import default_model_dir

        path = str(default_model_dir())
    model, tok = load_model(path, device=device, dtype="float32")
    return model, tok


def build_llaga(cfg: LlagaConfig, graph: TextGraph, llm: nn.Module, tokenizer: Any) -> Llaga:
    return Llaga(cfg, llm, tokenizer, _input_dim(cfg, graph))


def projector_state(model: Llaga) -> dict[str, Tensor]:
    return {k: v.detach().cpu() for k, v in model.projector.state_dict().items()}


def load_projector_(model: Llaga, state: dict[str, Tensor]) -> None:
    try:
        model.projector.load_state_dict(state)
    except RuntimeError as e:
        raise DataError(f"projector weights do not fit this model: {str(e).splitlines()[0]}") from None
    model.projector.to(next(model.llm.parameters()).device)
