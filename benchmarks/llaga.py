"""LLaGA (ND and HO templates, frozen LLM + trained projector) vs GCN and GraphSAGE on the same features.

World graph (``world:label=country``: 138 entities, 8 countries; node text = the entity's facts,
features = hashed bag of words unless a sentence model is installed), single-focus training as in
LLaGA's Table 1: one model per (method, task, seed); the seed draws the 6:2:2 node and edge splits
and the initialisation. Reports node-classification and link-prediction test accuracy (LLaGA: by
generation + string match, as the paper scores, and by the most likely candidate answer), training
seconds and trainable parameters.

    OMP_NUM_THREADS=1 python benchmarks/llaga.py                 # 3 seeds, the default LLM
    OMP_NUM_THREADS=1 python benchmarks/llaga.py --seeds 1 --llm smollm2-135m --epochs 2 --templates ho \\
        --tasks nc --graph world:label=country,people=40 --name llaga_smollm2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch_geometric.data import Data

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, write_result  # noqa: E402
from slimkit.graph import GNNConfig, GraphTrainConfig, ViewConfig, build_model, make_views  # noqa: E402
from slimkit.graph.llaga import (  # noqa: E402
    LlagaConfig,
    TextFeatureConfig,
    build_llaga,
    evaluate_llaga,
    load_llm,
    load_text_graph,
    majority_accuracy,
    train_llaga,
)
from slimkit.graph.metrics import link_ranking_metrics  # noqa: E402
from slimkit.graph.train import split_accuracies, train_model  # noqa: E402

PAPER_NC = {"arxiv": 76.66, "products": 84.67, "cora": 89.22, "pubmed": 95.03}  # LLaGA-HO-7B, Table 1


def gnn_nc(arch: str, graph, seed: int) -> dict:
    n = graph.num_nodes
    masks = [torch.zeros(n, dtype=torch.bool) for _ in range(3)]
    for m, idx in zip(masks, (graph.train_idx, graph.val_idx, graph.test_idx), strict=True):
        m[idx] = True
    data = Data(
        x=graph.x,
        edge_index=graph.edge_index,
        y=graph.y,
        train_mask=masks[0],
        val_mask=masks[1],
        test_mask=masks[2],
    )
    model = build_model(GNNConfig(arch=arch, hidden=64), graph.x.size(1), len(graph.class_names), seed=seed)
    view = make_views(ViewConfig(kind="full"), data, 1)[0]
    torch.manual_seed(seed)
    res = train_model(
        model,
        data,
        view,
        GraphTrainConfig(epochs=200, eval_every=5),
        generator=torch.Generator().manual_seed(seed),
    )
    model.load_state_dict(res.state)
    params = sum(p.numel() for p in model.parameters())
    return {"acc": split_accuracies(model, data)["test"], "seconds": res.seconds, "params": params}


def gnn_lp(arch: str, graph, seed: int, epochs: int = 200) -> dict:
    """A GNN encoder on the training-edge graph, a linear decoder on ``z_u ⊙ z_v`` (a weighted inner
    product: the world's edges join *different* kinds of entity, which a plain dot product cannot
    express), BCE on the training positives and as many random pairs drawn afresh every epoch (as
    PyG's link-prediction example; the fixed training negatives are memorised within ~50 epochs on
    this graph); the epoch with the best validation accuracy (threshold 0 on the logit) is kept."""
    links = graph.links
    encoder = build_model(GNNConfig(arch=arch, hidden=64), graph.x.size(1), 64, seed=seed)
    torch.manual_seed(seed)
    model = torch.nn.ModuleDict({"encoder": encoder, "decoder": torch.nn.Linear(64, 1)})
    opt = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=5e-4)
    gen = torch.Generator().manual_seed(seed)

    def logits(pos, neg):
        z = model["encoder"](graph.x, links.train_edge_index)
        pairs = torch.cat([pos, neg], 1)
        score = model["decoder"](z[pairs[0]] * z[pairs[1]]).squeeze(-1)
        return score, torch.cat([torch.ones(pos.size(1)), torch.zeros(neg.size(1))])

    def acc(pos, neg):
        model.eval()
        with torch.no_grad():
            s, y = logits(pos, neg)
        return float(((s > 0).float() == y).float().mean())

    def ranking(pos, neg):  # lprank on the decoder's logit, as LLaGA's is on log p(yes) - log p(no)
        model.eval()
        with torch.no_grad():
            s, y = logits(pos, neg)
        return link_ranking_metrics(s[y == 1], s[y == 0])

    best, best_state = -1.0, None
    start = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        neg = torch.randint(0, graph.num_nodes, links.train_pos.shape, generator=gen)
        s, y = logits(links.train_pos, neg)
        loss = F.binary_cross_entropy_with_logits(s, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if epoch % 5 == 4:
            v = acc(links.val_pos, links.val_neg)
            if v > best:
                best, best_state = v, {k: t.clone() for k, t in model.state_dict().items()}
    seconds = time.perf_counter() - start
    model.load_state_dict(best_state)
    return {
        "acc": acc(links.test_pos, links.test_neg),
        **ranking(links.test_pos, links.test_neg),
        "seconds": seconds,
        "params": sum(p.numel() for p in model.parameters()),
    }


def llaga_run(template: str, task: str, graph, llm, tok, seed: int, args) -> dict:
    cfg = LlagaConfig(
        template=template,
        hops=2,
        fanout=args.fanout,
        tasks=(task,),
        epochs=args.epochs,
        seed=seed,
        lr=args.lr,
    )
    model = build_llaga(cfg, graph, llm, tok)
    stats = train_llaga(model, graph)
    m = evaluate_llaga(model, graph, sentence_model=None)[task]
    return {
        "acc": m["accuracy"],
        "scored_acc": m["scored_accuracy"],
        "f1": m.get("f1"),
        **{k: m[k] for k in ("auc", "hits@1", "hits@10") if k in m},
        "seconds": stats.seconds,
        "params": stats.trainable_params,
        "tokens_per_node": cfg.graph_len,
        "final_loss": stats.losses[-1],
    }


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{100 * values[0]:.1f}"
    return f"{100 * statistics.mean(values):.1f} ± {100 * statistics.stdev(values):.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--graph", default="world:label=country")
    ap.add_argument("--llm", default="default")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument(
        "--fanout", type=int, default=6, help="ND fan-out (2 hops); 6 keeps lp prompts in 128 tokens"
    )
    ap.add_argument("--tasks", default="nc,lp")
    ap.add_argument("--encoder", default="auto", help="auto | hash | all-minilm-l6-v2 | DIR")
    ap.add_argument("--templates", default="nd,ho")
    ap.add_argument("--name", default="llaga")
    args = ap.parse_args()
    tasks = args.tasks.split(",")
    llm, tok = load_llm(args.llm)
    runs: dict[tuple[str, str], list[dict]] = {}
    majority: list[float] = []
    source = ""

    def save(table: dict | None = None) -> Path:  # after every run: a stopped run keeps what it measured
        return write_result(
            args.name,
            {
                "args": vars(args),
                "complete": table is not None,
                "feature_source": source,
                "majority_nc": majority,
                "paper_nc_llaga_ho_7b": PAPER_NC,
                "runs": {f"{m}/{t}": rs for (m, t), rs in runs.items()},
                **({"table": table} if table is not None else {}),
            },
        )

    for seed in range(args.seeds):
        graph = load_text_graph(args.graph, features=TextFeatureConfig(encoder=args.encoder), seed=seed)
        source = graph.feature_source
        majority.append(majority_accuracy(graph))
        for task in tasks:
            for arch in ("gcn", "sage"):
                r = (gnn_nc if task == "nc" else gnn_lp)(arch, graph, seed)
                runs.setdefault((arch.upper() if arch == "gcn" else "GraphSAGE", task), []).append(r)
                rank = f", AUC {r['auc']:.3f}, Hits@10 {r['hits@10']:.3f}" if "auc" in r else ""
                print(f"seed {seed} {arch} {task}: {r['acc']:.3f}{rank} ({r['seconds']:.1f} s)", flush=True)
                save()
            for template in args.templates.split(","):
                r = llaga_run(template, task, graph, llm, tok, seed, args)
                runs.setdefault((f"LLaGA-{template.upper()}", task), []).append(r)
                rank = f", AUC {r['auc']:.3f}, Hits@10 {r['hits@10']:.3f}" if "auc" in r else ""
                print(
                    f"seed {seed} llaga-{template} {task}: {r['acc']:.3f} / scored {r['scored_acc']:.3f}{rank} "
                    f"({r['seconds']:.1f} s)",
                    flush=True,
                )
                save()

    header = [
        "method",
        "task",
        "test acc % (generated)",
        "test acc % (scored)",
        "lp AUC %",
        "lp Hits@10 %",
        "train s",
        "trainable params",
    ]
    rows = []
    for (method, task), rs in runs.items():
        scored = mean_std([r["scored_acc"] for r in rs]) if "scored_acc" in rs[0] else "-"
        rows.append(
            [
                method,
                task,
                mean_std([r["acc"] for r in rs]),
                scored,
                mean_std([r["auc"] for r in rs]) if "auc" in rs[0] else "-",
                mean_std([r["hits@10"] for r in rs]) if "hits@10" in rs[0] else "-",
                f"{statistics.mean(r['seconds'] for r in rs):.1f}",
                f"{rs[0]['params']:,}",
            ]
        )
    print(f"\n{args.graph}, LLM {args.llm}, {args.seeds} seed(s); features: {source}")
    print(f"nc majority-class test accuracy: {mean_std(majority)}")
    print_table(header, rows)
    path = save({"header": header, "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
