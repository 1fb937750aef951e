"""LLaGA — "LLaGA: Large Language and Graph Assistant" (Chen et al., ICML 2024, arXiv 2402.08170).

Graph nodes become structure-aware sequences of feature vectors (Neighborhood Detail or Hop-Field
Overview templates), a small projector maps them into a frozen causal LM's embedding space, and the
LLM answers node classification, link prediction and node description prompts.

>>> from slimkit.graph.llaga import LlagaConfig, load_text_graph, load_llm, build_llaga, train_llaga
>>> graph = load_text_graph("world:label=country")
>>> llm, tok = load_llm("default")
>>> model = build_llaga(LlagaConfig(template="ho", tasks=("nc",)), graph, llm, tok)
>>> stats = train_llaga(model, graph)
"""

from slimkit.graph.llaga.data import (
    LinkSplit,
    TextFeatureConfig,
    TextGraph,
    hashed_bag_of_words,
    link_splits,
    load_text_graph,
    node_text_features,
    random_node_split,
)
from slimkit.graph.llaga.model import (
    DEFAULT_LLM,
    Llaga,
    LlagaConfig,
    build_llaga,
    build_projector,
    evaluate_llaga,
    load_llm,
    majority_accuracy,
    parse_tasks,
    train_llaga,
)
from slimkit.graph.llaga.prompts import GRAPH_TOKEN, PLACEHOLDER, assemble_embeds, encode_example
from slimkit.graph.llaga.templates import (
    PAD,
    hop_field_features,
    nd_length,
    neighbor_detail_sequences,
    tree_laplacian_pe,
)

__all__ = [
    "DEFAULT_LLM",
    "GRAPH_TOKEN",
    "PAD",
    "PLACEHOLDER",
    "LinkSplit",
    "Llaga",
    "LlagaConfig",
    "TextFeatureConfig",
    "TextGraph",
    "assemble_embeds",
    "build_llaga",
    "build_projector",
    "encode_example",
    "evaluate_llaga",
    "hashed_bag_of_words",
    "hop_field_features",
    "link_splits",
    "load_llm",
    "load_text_graph",
    "majority_accuracy",
    "nd_length",
    "neighbor_detail_sequences",
    "node_text_features",
    "parse_tasks",
    "random_node_split",
    "train_llaga",
    "tree_laplacian_pe",
]
