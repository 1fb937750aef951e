"""slimkit.train and IDEA Prune under torchrun with DDP: 2 CPU processes (gloo) against one process.

The workers (ddp_train_worker.py) run under ``python -m torch.distributed.run --nproc-per-node 2``;
each test launches one torchrun in a session of its own, so a hang kills torchrun and its workers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from ddp_train_worker import tiny_setup
from transformers import AutoModelForCausalLM

from slimkit.core.distributed import check_same_on_all_ranks
from slimkit.core.errors import ConfigError
from slimkit.models import tiny_tokenizer
from slimkit.train import TrainConfig, train

WORKER = Path(__file__).with_name("ddp_train_worker.py")


def cfg_steps() -> int:
    return tiny_setup()[2].steps


def torchrun(*args: str, timeout: int = 240) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SLIMKIT_PROGRESS": "0"}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[2] / "src"), env.get("PYTHONPATH", "")])
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    proc = subprocess.Popen(
        [*launch, str(WORKER), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    assert proc.returncode == 0, stderr[-4000:]


def test_ddp_train_two_ranks_match_one_process_and_resume_exactly(tmp_path):
    torchrun(str(tmp_path), "train")
    r0, r1 = (torch.load(tmp_path / f"train_rank{r}.pt", weights_only=True) for r in (0, 1))
    for k, v in r0["full"].items():
        assert torch.equal(v, r1["full"][k]), k  # DDP keeps the ranks bitwise identical
        assert torch.equal(v, r0["resumed"][k]), k  # stop after 3 steps + resume == uninterrupted
    assert r0["losses"] == r1["losses"] == r0["resumed_losses"]
    # one writer (rank 0): the checkpoints are whole, the newest is the last step
    steps = sorted(p.name for p in (tmp_path / "full" / "checkpoints").iterdir() if p.is_dir())
    assert steps[-1] == f"step-{cfg_steps():08d}"

    model, tokens, cfg = tiny_setup()
    one = train(model, tokens, cfg)  # one process, the same global batch of 4 x 2 windows per step
    init, _, _ = tiny_setup()
    moved = 0
    for k, v in model.state_dict().items():
        # float32: a rank's mean over 2 windows averaged by DDP rounds differently from the mean over 4
        # (~1e-7 relative per gradient); after Adam's normalised updates over 6 steps the measured
        # max |Δw| is 2.3e-7, so atol 1e-5 leaves a 40x margin yet catches any real divergence
        torch.testing.assert_close(r0["full"][k], v, rtol=1e-4, atol=1e-5, msg=k)
        moved += not torch.equal(init.state_dict()[k], v)
    assert moved >= len(init.state_dict()) // 2  # the comparison is of trained weights
    assert one.losses == pytest.approx(r0["losses"], rel=1e-5)


def test_ddp_idea_prune_with_baselines_identical_on_both_ranks(tmp_path):
    tok = tmp_path / "tok"
    tiny_tokenizer().save_pretrained(tok)
    text = tmp_path / "corpus.txt"
    text.write_text(
        "\n\n".join(f"The city number {i} lies by the river {i % 7} and trades salt." for i in range(300))
    )
    torchrun(str(tmp_path), "idea", str(tok), str(text))
    r0, r1 = (json.loads((tmp_path / f"idea_rank{r}.json").read_text()) for r in (0, 1))
    assert r0["saved"] == r1["saved"]  # every stage's model: the same weights on both ranks
    assert set(r0["saved"]) == {"idea", "scratch", "naive/enlarged", "naive/pruned", "naive/recover"}

    for stage, entry in r0["saved"].items():
        assert entry["width"] == (32 if stage == "naive/enlarged" else 16), stage
    assert r0["comparison"] == r1["comparison"]  # rank 0's evaluation, broadcast
    assert r0["comparison"]["pipelines"]["idea"]["metrics"]["ppl"] > 1
    saved = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "idea" / "model")
    assert saved.config.intermediate_size == 16 and saved.model.layers[0].mlp.up_proj.out_features == 16


def test_ranks_that_disagree_on_the_kept_neurons_raise_on_every_rank(tmp_path):
    torchrun(str(tmp_path), "disagree", timeout=120)
    for r in (0, 1):
        message = (tmp_path / f"disagree_rank{r}.txt").read_text()
        assert message.startswith(f"rank {r}: the ranks disagree on the kept neurons"), message


def test_fsdp_is_refused_with_the_reason():
    with pytest.raises(ConfigError, match="parallel=fsdp is not supported: FSDP shards"):
        TrainConfig(parallel="fsdp")
    with pytest.raises(ConfigError, match="parallel='zero3' is not one of"):
        TrainConfig(parallel="zero3")


def test_single_process_helpers_are_no_ops():
    check_same_on_all_ranks([torch.tensor([1, 2])], "anything")  # nothing to compare with


def test_batch_must_split_over_ranks(monkeypatch):
    import torch.distributed as dist

    store = dist.HashStore()
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        from slimkit.train import loop

        model, tokens, cfg = tiny_setup()
        with pytest.raises(ConfigError, match="batch_size=3 must be a multiple of the 2 torchrun ranks"):
            loop._train(
                model, tokens, TrainConfig(batch_size=3, steps=1, seqlen=16), None, torch.device("cpu"),
                loop.DistInfo(0, 2, False), False, (), None,
            )  # fmt: skip
    finally:
        dist.destroy_process_group()
