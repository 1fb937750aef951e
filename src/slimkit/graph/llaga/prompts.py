"""LLaGA prompts: task texts with ``<graph>`` placeholders, tokenisation, and embedding assembly.

LLaGA — "LLaGA: Large Language and Graph Assistant" (arXiv 2402.08170). A prompt holds one
``<graph>`` per node sequence; tokenisation turns each into ``G`` slots of the sentinel id
:data:`GRAPH_TOKEN` (G = the template's sequence length), and :func:`assemble_embeds` builds the LLM
input ``inputs_embeds [B, T, H]`` as the token embeddings with the slots overwritten, in row-major
order, by the projected node tokens ``[S, H]`` (S = the number of slots in the batch). Slots and the
prompt get label −100: only the answer (and EOS) is trained.

Prompts (LLaGA's, with the dataset description adapted to the graph):

- ``nc``: "Given a node-centered graph: <graph>, where nodes represent {nodes} and edges {edges}. We
  need to classify the center node into {C} classes: {names}, please tell me which class the center
  node belongs to?" → the class name;
- ``lp``: "Given two node-centered subgraphs: <graph> and <graph>, we need to predict whether these
  two nodes connect with each other. Please tell me whether two center nodes in the subgraphs should
  connect to each other." → ``yes`` / ``no``;
- ``nd``: "Please briefly describe the center node of <graph>." → "This is a {class} node. {text}".

A tokenizer with a chat template gets the prompt as one user turn; one without is given
``USER: {prompt} ASSISTANT:`` (the shape of LLaGA's ``vicuna_v1`` conversation).

Prompt styles: ``paper`` (the prompts above) and ``short`` (``Node <graph>. Its class is`` /
``Node <graph> and node <graph>. Linked:`` / ``Node <graph>. Description:``, no conversation
wrapper), for small LMs that were never instruction-tuned: the factworld model was trained on
128-token windows of plain statements, and the paper's nc prompt alone is ~200 of its tokens.
``auto`` picks ``paper`` when the tokenizer has a chat template, else ``short``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from slimkit.core.errors import ConfigError, DataError

PLACEHOLDER = "<graph>"
GRAPH_TOKEN = -200  # LLaGA's GRAPH_TOKEN_INDEX
IGNORE = -100
TASKS = ("nc", "lp", "nd")
GRAPH_DESCRIPTION = {
    "world": (
        "the entities of a fictional world (people, cities, countries, companies)",
        "the facts linking them",
    ),
}
DEFAULT_DESCRIPTION = ("the items of a graph", "the links between them")


PROMPT_STYLES = ("auto", "paper", "short")
SHORT = {
    "nc": f"Node {PLACEHOLDER}. Its class is",
    "lp": f"Node {PLACEHOLDER} and node {PLACEHOLDER}. Linked:",
    "nd": f"Node {PLACEHOLDER}. Description:",
}


def resolve_style(style: str, tokenizer) -> str:
    """``auto`` → ``paper`` for a tokenizer with a chat template, else ``short``."""
    if style not in PROMPT_STYLES:
        raise ConfigError(f"prompt style {style!r} is not one of {list(PROMPT_STYLES)}")
    if style == "auto":
        return "paper" if getattr(tokenizer, "chat_template", None) else "short"
    return style


def task_prompt(task: str, style: str, class_names: list[str], graph: str = "") -> str:
    """The prompt of ``task`` in a resolved ``style`` (``paper`` or ``short``)."""
    if task not in TASKS:
        raise ConfigError(f"task {task!r} is not one of {list(TASKS)}")
    if style == "short":
        return SHORT[task]
    return {"nc": nc_prompt(class_names, graph), "lp": LP_PROMPT, "nd": ND_PROMPT}[task]


def nc_prompt(class_names: list[str], graph: str = "") -> str:
    nodes, edges = GRAPH_DESCRIPTION.get(graph, DEFAULT_DESCRIPTION)
    return (
        f"Given a node-centered graph: {PLACEHOLDER}, where nodes represent {nodes} and edges represent "
        f"{edges}. We need to classify the center node into {len(class_names)} classes: "
        f"{', '.join(class_names)}, please tell me which class the center node belongs to?"
    )


LP_PROMPT = (
    f"Given two node-centered subgraphs: {PLACEHOLDER} and {PLACEHOLDER}, we need to predict whether these "
    "two nodes connect with each other. Please tell me whether two center nodes in the subgraphs should "
    "connect to each other."
)
ND_PROMPT = f"Please briefly describe the center node of {PLACEHOLDER}."


def nd_answer(class_name: str, text: str) -> str:
    return f"This is a {class_name} node. {text}"


def chat_text(tokenizer, prompt: str, style: str = "paper") -> str:
    """The prompt as the model expects a user turn, ending where the answer starts (``short``: as is)."""
    if style == "short":
        return prompt
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
    return f"USER: {prompt} ASSISTANT:"


@dataclass
class Encoded:
    """One tokenised example: ``ids`` with :data:`GRAPH_TOKEN` slots, ``labels`` (−100 except the answer)."""

    ids: list[int]
    labels: list[int]
    num_graphs: int


def encode_example(
    tokenizer, prompt: str, answer: str | None, graph_len: int, style: str = "paper", *, eos: bool = True
) -> Encoded:
    """Tokenise ``prompt`` (with ``<graph>`` placeholders) and, when given, ``answer`` + EOS.

    Each placeholder becomes ``graph_len`` :data:`GRAPH_TOKEN` ids; the text between placeholders is
    tokenised piece by piece (special tokens such as BOS only on the first piece), so the
    placeholder never merges with neighbouring characters into one BPE token.
    """
    if graph_len < 1:
        raise ConfigError(f"graph_len must be >= 1, got {graph_len}")
    pieces = chat_text(tokenizer, prompt, style).split(PLACEHOLDER)
    ids: list[int] = []
    for k, piece in enumerate(pieces):
        if k:
            ids += [GRAPH_TOKEN] * graph_len
        if piece or k == 0:
            ids += tokenizer(piece, add_special_tokens=k == 0)["input_ids"]
    labels = [IGNORE] * len(ids)
    if answer is not None:
        # a space joins the answer to a prompt that ends in a word ("Its class is"); after a chat
        # template's "assistant\n" the answer starts the line
        text = answer.strip() if pieces[-1][-1:].isspace() else " " + answer.strip()
        ans = tokenizer(text, add_special_tokens=False)["input_ids"]
        if eos and tokenizer.eos_token_id is not None:
            ans = ans + [tokenizer.eos_token_id]
        ids += ans
        labels += ans
    return Encoded(ids, labels, len(pieces) - 1)


def collate(
    examples: list[Encoded], pad_id: int, *, left: bool = False
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(ids, labels, attention_mask, position_ids)`` ``[B, T]`` padded right (training) or left
    (generation, so every prompt ends at the last column); positions count real tokens only."""
    t = max(len(e.ids) for e in examples)
    b = len(examples)
    ids = torch.full((b, t), pad_id, dtype=torch.long)
    labels = torch.full((b, t), IGNORE, dtype=torch.long)
    mask = torch.zeros(b, t, dtype=torch.long)
    for i, e in enumerate(examples):
        sl = slice(t - len(e.ids), t) if left else slice(0, len(e.ids))
        ids[i, sl] = torch.tensor(e.ids)
        labels[i, sl] = torch.tensor(e.labels)
        mask[i, sl] = 1
    pos = (mask.cumsum(1) - 1).clamp_min(0)
    return ids, labels, mask, pos


def assemble_embeds(embed: torch.nn.Embedding, ids: Tensor, graph_tokens: Tensor) -> Tensor:
    """``inputs_embeds [B, T, H]``: ``embed(ids)`` with every :data:`GRAPH_TOKEN` slot replaced, in
    row-major order, by the rows of ``graph_tokens [S, H]`` (S must equal the number of slots)."""
    slots = ids == GRAPH_TOKEN
    n = int(slots.sum())
    if n != graph_tokens.size(0):
        raise DataError(f"{n} graph slots in the batch but {graph_tokens.size(0)} node tokens")
    emb = embed(ids.masked_fill(slots, 0))
    return emb.masked_scatter(slots.unsqueeze(-1), graph_tokens.to(emb.dtype))
