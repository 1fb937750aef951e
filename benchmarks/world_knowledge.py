"""Does perplexity hide knowledge loss on the built-in world, or did the old held-out text invent it?

Issue 13 item 4: the world's held-out text used to be one statement per fact with uniform subjects,
most of it verbatim in the training corpus; pruning flattened the name prior and *lowered* its
perplexity while the facts were lost. This script prunes (or quantizes) a model and scores, for the
dense model and every variant:

* whole-text and answer-token perplexity (NLL of the facts' object tokens only,
  :mod:`slimkit.evaluate.perplexity`) on two texts of the default world:
  ``heldout`` — the held-out text the world ships now (3-fact documents drawn like the corpus, none a
  corpus document) — and ``uniform`` — the old shape rebuilt here: every fact once, as one sentence
  in a training phrasing, uniform over facts (most of them corpus documents);
* closed-book factoid exact match (the first ``--factoid`` questions), popular and rare halves;
* the world's summarization passages (the first ``--summaries``): ROUGE-L and key-fact recall.

On a real model (``--model smollm2-135m``) the world's texts mean nothing (it never read them), so
only summarization runs, with the model's chat template (``chat_template="auto"``).

    python benchmarks/world_knowledge.py                                  # default model, 4 prunings
    python benchmarks/world_knowledge.py --variants magnitude:0.5,rtn:4
    python benchmarks/world_knowledge.py --model smollm2-135m --variants wanda:0.5 --summaries 24

Prints a table and writes ``benchmarks/results/world_knowledge[_<model>].json``.
"""

from __future__ import annotations

import argparse
import copy
import random
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, write_result  # noqa: E402

SPARSITY_METHODS = ("magnitude", "wanda", "sparsegpt")


def uniform_statements(world: Any, seed: int = 0) -> tuple[list[str], list[tuple[int, int]]]:
    """The old held-out shape: every fact once as one training-phrased sentence, shuffled, with the
    character spans of the objects in the ``"\\n\\n"``-joined text."""
    from slimkit.data.factworld import RELATIONS
    from slimkit.data.factworld.templates import render

    rng = random.Random(seed)
    docs = []
    for fact in world.facts:
        template = rng.choice(RELATIONS[fact.relation].statements)
        start = len(render(template.split("{o}", 1)[0], fact.subject))
        docs.append((render(template, fact.subject, fact.object), start, len(fact.object)))
    rng.shuffle(docs)
    spans, offset = [], 0
    for text, start, length in docs:
        spans.append((offset + start, offset + start + length))
        offset += len(text) + 2
    return [d for d, _, _ in docs], spans


def loss_breakdown(model: Any, tok: Any, docs: list[str], spans: list[tuple[int, int]], subjects: list[str]):
    """Mean NLL and share of the total loss per kind of target token in 128-token windows of the
    joined ``docs``: ``answer`` (a fact's object), ``subject-first`` / ``subject-rest`` (first / later
    tokens of an entity name), ``after-period`` (the token after a sentence's final period, inside a
    document) and ``other``."""
    import re

    import torch.nn.functional as F

    from slimkit.evaluate.perplexity import answer_token_mask, text_token_ids

    text = "\n\n".join(docs)
    names = sorted(set(subjects), key=len, reverse=True)
    name_spans = [(m.start(), m.end()) for n in names for m in re.finditer(re.escape(n), text)]
    ids = text_token_ids(tok, text)
    answer = answer_token_mask(tok, text, spans)
    name = answer_token_mask(tok, text, name_spans)
    sums: dict[str, list[float]] = {}
    seqlen = 128
    with torch.no_grad():
        for w in range(len(ids) // seqlen):
            window = torch.tensor(ids[w * seqlen : (w + 1) * seqlen])
            losses = F.cross_entropy(
                model(input_ids=window[None]).logits[0, :-1].float(), window[1:], reduction="none"
            )
            for i in range(1, seqlen):
                g = w * seqlen + i
                if answer[g]:
                    kind = "answer"
                elif name[g]:
                    kind = "subject-rest" if name[g - 1] else "subject-first"
                elif tok.decode([ids[g - 1]]).endswith("."):
                    kind = "after-period"
                else:
                    kind = "other"
                entry = sums.setdefault(kind, [0.0, 0])
                entry[0] += losses[i - 1].item()
                entry[1] += 1
    total = sum(v[0] for v in sums.values())
    return {k: {"mean_nll": v[0] / v[1], "share": v[0] / total, "n": v[1]} for k, v in sums.items()}


def parse_variants(text: str) -> list[tuple[str, float]]:
    out = []
    for item in filter(None, text.split(",")):
        method, _, value = item.partition(":")
        out.append((method, float(value)))
    return out


def build(method: str, value: float, group_size: int) -> Any:
    from slimkit.compress import build_config

    if method in SPARSITY_METHODS:
        return build_config(method, sparsity=value)
    return build_config(method, bits=int(value), group_size=group_size)


def label(method: str, value: float) -> str:
    return f"{method} {value:.0%}" if method in SPARSITY_METHODS else f"{method} {int(value)}-bit"


def score(model: Any, tok: Any, args: argparse.Namespace, texts: dict[str, Any]) -> dict[str, float]:
    from slimkit.evaluate import evaluate, perplexity, run_suite
    from slimkit.models.default import default_world_data

    out: dict[str, float] = {}
    for name, (docs, spans) in texts.items():
        res = perplexity(model, tok, docs, seqlen=128, batch_size=32, answer_spans=spans)
        out[f"{name}_ppl"], out[f"{name}_answer_ppl"] = res.ppl, res.answer_ppl
    if "heldout" in texts:
        docs, spans = texts["heldout"]
        subjects = [f.subject for f in args.world.facts]
        for kind, v in sorted(loss_breakdown(model, tok, docs, spans, subjects).items()):
            out[f"nll_{kind}"], out[f"share_{kind}"] = v["mean_nll"], v["share"]
    if args.factoid:
        m = evaluate(model, tok, suite="factoid", data=default_world_data("factoid"), limit=args.factoid)
        f = m["factoid"]
        out |= {
            "factoid_em": f["exact_match"],
            "em_popular": f["exact_match@popularity_half=popular"],
            "em_rare": f["exact_match@popularity_half=rare"],
        }
    if args.summaries:
        from slimkit.data.factworld.templates import WORLD_SUMMARY_TEMPLATE

        run = run_suite(
            model,
            tok,
            "summarization",
            data=default_world_data("summarization"),
            limit=args.summaries,
            prompt_template=WORLD_SUMMARY_TEMPLATE,
            max_new_tokens=64,
            batch_size=8,
        )
        s = run.metrics["summarization"]
        out |= {"rougeL": s["rougeL"], "key_fact_recall": s["key_fact_recall"]}
        # what the summaries look like (kept in the JSON, not the table)
        out["examples"] = [ex["prediction"] for ex in run.examples["summarization"][:2]]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default")
    ap.add_argument(
        "--variants",
        default="magnitude:0.5,magnitude:0.7,wanda:0.5,wanda:0.7",
        help="method:sparsity or method:bits, comma-separated (e.g. rtn:4)",
    )
    ap.add_argument("--calib", default=None, help="default: world:corpus / python-docs:calib")
    ap.add_argument("--nsamples", type=int, default=64)
    ap.add_argument(
        "--group-size", type=int, default=16, help="quantization group (16 divides the world model's 688)"
    )
    ap.add_argument("--factoid", type=int, default=200, help="factoid questions (0: none)")
    ap.add_argument("--summaries", type=int, default=120, help="summarization passages (0: none)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from slimkit.cli.common import resolve_model
    from slimkit.compress import calibration_for, compress_

    world = args.model == "default"
    dense, tok, _ = resolve_model(args.model)
    texts: dict[str, Any] = {}
    if world:
        from slimkit.data.factworld import WorldConfig, generate_world

        w = args.world = generate_world(WorldConfig())
        texts["heldout"] = (w.heldout_documents(), [(s["start"], s["end"]) for s in w.heldout_answer_spans()])
        texts["uniform"] = uniform_statements(w)
    else:
        args.factoid = 0  # a real model never read the world's facts
    calib_source = args.calib or ("world:corpus" if world else "python-docs:calib")
    seqlen = 128 if world else 256

    records = []
    started = time.perf_counter()
    records.append({"variant": "dense", **score(dense, tok, args, texts)})
    print(f"done dense ({time.perf_counter() - started:.0f} s)", flush=True)
    for method, value in parse_variants(args.variants):
        cfg = build(method, value, args.group_size)
        calib = calibration_for(cfg, tok, calib_source, nsamples=args.nsamples, seqlen=seqlen, model=dense)
        model = copy.deepcopy(dense)
        compress_(model, cfg, calib, progress=False)
        records.append({"variant": label(method, value), **score(model, tok, args, texts)})
        print(f"done {label(method, value)} ({time.perf_counter() - started:.0f} s)", flush=True)
        del model

    columns = [
        k for k in records[0] if k not in ("variant", "examples") and not k.startswith(("nll_", "share_"))
    ]
    rows = [[r["variant"], *(f"{r[c]:.3f}" for c in columns)] for r in records]
    print_table(["variant", *columns], rows)
    if world:  # where the held-out text's loss sits: mean NLL (share of the total) per kind of token
        kinds = sorted(k[4:] for k in records[0] if k.startswith("nll_"))
        rows = [
            [r["variant"], *(f"{r['nll_' + k]:.2f} ({r['share_' + k]:.0%})" for k in kinds)] for r in records
        ]
        print_table(["variant", *kinds], rows)
    name = "world_knowledge" if world else f"world_knowledge_{args.model.replace('-', '_')}"
    path = write_result(
        name,
        {
            "model": args.model,
            "calib": calib_source,
            "nsamples": args.nsamples,
            "factoid_limit": args.factoid,
            "summaries": args.summaries,
            "wall_s": time.perf_counter() - started,
            "records": records,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
