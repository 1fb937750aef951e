"""slimkit's multiple-choice evaluator vs lm-evaluation-harness's HF model: same model, same questions.

One run, one model (a random-init LLaMA, 768 hidden x 12 layers: ~85M parameters in its blocks, the
size of the issue's reference timing), 200 four-option questions with ~30-word prompts, written both
as slimkit JSONL and as a local lm-eval task YAML over the same file. Three evaluators, batch 16:

* ``lm-eval HFLM``: lm-eval 0.4's Hugging Face model; one request per (question, option), so every
  prompt is run four times.
* ``slimkit mc``: ``slimkit.evaluate(..., suite="mc")``; each prompt runs once and its KV cache is
  shared by the options.
* ``slimkit via lm-eval``: the same lm-eval task through :class:`slimkit.evaluate.lm_eval.SlimkitLM`
  (lm-eval's loop, slimkit's scoring).

Accuracy must be identical (same log-likelihoods); questions/s is the claim (goal >= 2x HFLM).
Prints a table and writes ``benchmarks/results/eval_vs_lm_eval.json``. Needs the ``eval`` extra and
``accelerate`` (lm-eval's HF model imports it); runs offline.

    .venv/bin/python benchmarks/eval_vs_lm_eval.py [--questions 200] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import torch

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, write_result  # noqa: E402

WORDS = [
    "river",
    "stone",
    "market",
    "winter",
    "garden",
    "north",
    "harbor",
    "silver",
    "lantern",
    "valley",
    "bridge",
    "forest",
    "copper",
    "island",
    "meadow",
    "tower",
    "village",
    "castle",
    "mountain",
    "desert",
    "ocean",
    "thunder",
    "orchard",
    "station",
    "library",
    "festival",
    "engine",
    "painter",
    "merchant",
    "sailor",
    "farmer",
    "doctor",
    "teacher",
    "soldier",
    "baker",
    "weaver",
    "builder",
]
SHAPE = dict(hidden_size=768, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=12)


def make_questions(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    records = []
    for i in range(n):
        story = " ".join(rng.choice(WORDS) for _ in range(24))
        question = f"{story.capitalize()}. Which place did the {rng.choice(WORDS)} visit first?"
        options = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 3))) for _ in range(4)]
        records.append(
            {"id": f"q{i}", "question": question, "options": options, "answer_index": rng.randrange(4)}
        )
    return records


def write_task(records: list[dict], directory: Path) -> None:
    data = directory / "mc.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    (directory / "bench_mc.yaml").write_text(
        "task: slimkit_bench_mc\n"
        "dataset_path: json\n"
        "dataset_kwargs:\n"
        "  data_files:\n"
        f"    test: {data}\n"
        "test_split: test\n"
        "output_type: multiple_choice\n"
        'doc_to_text: "Question: {{question}}\\nAnswer:"\n'
        'doc_to_choice: "{{options}}"\n'
        "doc_to_target: answer_index\n"
        "metric_list:\n"
        "  - metric: acc\n"
        "    aggregation: mean\n"
        "    higher_is_better: true\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from lm_eval.models.huggingface import HFLM
    from transformers import LlamaConfig, LlamaForCausalLM

    from slimkit.data.tokenizer import train_bpe_tokenizer
    from slimkit.evaluate import evaluate
    from slimkit.evaluate.lm_eval import SlimkitLM, run_lm_eval

    records = make_questions(args.questions, args.seed)
    texts = [r["question"] + " " + " ".join(r["options"]) for r in records]
    tok = train_bpe_tokenizer(texts, vocab_size=1024)
    torch.manual_seed(args.seed)
    config = LlamaConfig(
        vocab_size=len(tok),
        num_key_value_heads=SHAPE["num_attention_heads"],
        max_position_embeddings=512,
        **SHAPE,
    )
    model = LlamaForCausalLM(config).eval()
    n_params = sum(p.numel() for p in model.parameters())
    words = sum(len(r["question"].split()) for r in records) / len(records)

    rows, runs = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        write_task(records, Path(tmp))

        def timed(name, fn):
            t0 = time.perf_counter()
            acc = fn()
            seconds = time.perf_counter() - t0
            runs[name] = {"accuracy": acc, "seconds": seconds, "questions_per_s": len(records) / seconds}
            print(f"{name}: accuracy {acc:.4f} in {seconds:.1f} s", flush=True)

        def lm_eval_acc(lm):
            out = run_lm_eval(lm, ["slimkit_bench_mc"], include_path=tmp, include_defaults=False)
            return out["results"]["slimkit_bench_mc"]["acc,none"]

        timed(
            "lm-eval HFLM",
            lambda: lm_eval_acc(HFLM(pretrained=model, tokenizer=tok, batch_size=args.batch_size)),
        )
        timed(
            "slimkit mc",
            lambda: evaluate(
                model, tok, suite="mc", data=str(Path(tmp) / "mc.jsonl"), batch_size=args.batch_size
            )["mc"]["accuracy"],
        )
        timed("slimkit via lm-eval", lambda: lm_eval_acc(SlimkitLM(model, tok, batch_size=args.batch_size)))

    base = runs["lm-eval HFLM"]
    for name, r in runs.items():
        rows.append(
            [
                name,
                f"{r['accuracy']:.4f}",
                r["seconds"],
                r["questions_per_s"],
                f"{r['questions_per_s'] / base['questions_per_s']:.2f}x",
            ]
        )
    print_table(["evaluator", "accuracy", "seconds", "questions/s", "vs lm-eval"], rows)
    same = len({round(r["accuracy"], 10) for r in runs.values()}) == 1
    print(f"identical accuracy: {same}")
    write_result(
        "eval_vs_lm_eval",
        {
            "model": {"shape": SHAPE, "parameters": n_params, "vocab_size": len(tok)},
            "questions": len(records),
            "options": 4,
            "mean_prompt_words": words,
            "batch_size": args.batch_size,
            "runs": runs,
            "identical_accuracy": same,
            "speedup_slimkit_mc": runs["slimkit mc"]["questions_per_s"] / base["questions_per_s"],
            "speedup_adapter": runs["slimkit via lm-eval"]["questions_per_s"] / base["questions_per_s"],
        },
    )


if __name__ == "__main__":
    main()
