"""The sequential calibration runner and calibration sampling."""

from __future__ import annotations

import random
import re

import pytest
import torch

from slimkit.compress import SparseGPTConfig, WandaConfig, compress_
from slimkit.compress.calibrate import (
    capture_block_inputs,
    check_calibration,
    run_block,
    run_sequential_,
    true_sequential_groups,
)
from slimkit.compress.prune import select_prune_targets
from slimkit.compress.prune.base import PRUNERS, Pruner
from slimkit.core.errors import ConfigError, DataError
from slimkit.data.calibration import draw_calibration, sample_calibration, spread_starts
from slimkit.models import tiny_model
from slimkit.models.adapters import GPT2, LLAMA, OPT, get_adapter

FAMILIES = ["llama", "mistral", "qwen2", "opt", "gpt2"]


def _calib(n: int = 4, seqlen: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randint(3, 512, (n, seqlen), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("family", FAMILIES)
def test_captured_inputs_reproduce_hidden_states(family):
    model = tiny_model(family, seed=0)
    calib = _calib(5)
    with torch.no_grad():
        reference = model(calib, output_hidden_states=True).hidden_states
    inputs = capture_block_inputs(model, calib, chunk_size=2)
    assert [h.shape[0] for h in inputs.hidden] == [2, 2, 1]
    blocks = get_adapter(model).blocks(model)
    cpu = torch.device("cpu")
    for index, block in enumerate(blocks):
        torch.testing.assert_close(torch.cat(inputs.hidden), reference[index], rtol=1e-5, atol=1e-5)
        inputs = inputs.with_hidden(run_block(block, inputs, cpu, cpu))


@pytest.mark.parametrize(
    "config", [WandaConfig(sparsity=0.5), SparseGPTConfig(sparsity=0.5, true_sequential=True)]
)
def test_chunk_size_does_not_change_the_result(config):
    calib = _calib(4)
    results = []
    for chunk_size in (1, 4):
        model = tiny_model("llama", seed=0)
        compress_(model, config, calib, chunk_size=chunk_size, progress=False)
        results.append(model.state_dict())
    for key, value in results[0].items():
        torch.testing.assert_close(value, results[1][key], rtol=1e-4, atol=1e-5)
        assert torch.equal(value == 0, results[1][key] == 0), key


def test_onload_offload_path_equals_plain_path():
    calib = _calib(4)
    plain, moved = tiny_model("opt", seed=0), tiny_model("opt", seed=0)
    compress_(plain, SparseGPTConfig(sparsity=0.5), calib, device=None, progress=False)
    compress_(moved, SparseGPTConfig(sparsity=0.5), calib, device="cpu", progress=False)
    for key, value in plain.state_dict().items():
        assert torch.equal(value, moved.state_dict()[key]), key


class _Recorder:
    """A CalibratedMethod that records what the runner asks of it."""

    modifies_weights = True

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.tokens: dict[str, int] = {}

    def observe(self, name, inputs):
        assert inputs.dtype == torch.float32 and inputs.dim() == 2
        self.tokens[name] = self.tokens.get(name, 0) + inputs.shape[0]

    def compress(self, name, module):
        self.events.append(("compress", name.rsplit(".", 1)[-1]))

    def reset(self):
        self.events.append(("reset", ""))


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_sequential_groups_order(family):
    model = tiny_model(family, seed=0)
    adapter = get_adapter(model)
    targets = select_prune_targets(model, WandaConfig())
    recorder = _Recorder()
    run_sequential_(
        model, recorder, _calib(3), targets, sequential_groups=true_sequential_groups(adapter), progress=False
    )
    resets = [i for i, e in enumerate(recorder.events) if e[0] == "reset"]
    assert len(resets) == 4 * len(adapter.blocks(model))  # one per group per block
    assert all(t == 3 * 16 for t in recorder.tokens.values())  # every target saw every token once
    first_block = [e[1] for e in recorder.events[: resets[3] + 1] if e[0] == "compress"]
    if family == "llama":
        assert first_block == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    else:
        assert first_block == ["c_attn", "c_proj", "c_fc", "c_proj"]


class _GroupRecorder(_Recorder):
    """A method with ``compress_group``: the runner hands it each group whole."""

    def compress_group(self, group):
        self.events.append(("group", ",".join(n.rsplit(".", 1)[-1] for n in group)))


def test_runner_hands_a_method_with_compress_group_each_group_whole():
    model = tiny_model("llama", seed=0)
    adapter = get_adapter(model)
    recorder = _GroupRecorder()
    targets = select_prune_targets(model, WandaConfig())
    run_sequential_(
        model, recorder, _calib(2), targets, sequential_groups=true_sequential_groups(adapter), progress=False
    )
    groups = [e[1] for e in recorder.events if e[0] == "group"]
    assert not [e for e in recorder.events if e[0] == "compress"]  # never called per linear
    assert groups[:4] == ["q_proj,k_proj,v_proj", "o_proj", "gate_proj,up_proj", "down_proj"]
    assert len(groups) == 4 * len(adapter.blocks(model))


def test_sparsegpt_group_sweep_equals_per_linear_sweeps(monkeypatch):
    """SparseGPT prunes q/k/v (and gate/up) in one sweep; the result is the per-linear sweeps'."""
    calib = _calib(4)
    together, apart = tiny_model("llama", seed=0), tiny_model("llama", seed=0)
    config = SparseGPTConfig(sparsity=0.5, pattern="2:4")
    report = compress_(together, config, calib, progress=False)
    # the base class's compress_group: one linear at a time, each its own sweep
    monkeypatch.setattr(PRUNERS.lookup(SparseGPTConfig), "compress_group", Pruner.compress_group)
    compress_(apart, config, calib, progress=False)
    for (key, a), b in zip(together.state_dict().items(), apart.state_dict().values(), strict=True):
        assert torch.equal(a == 0, b == 0), key
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5 * float(b.abs().max() + 1e-12))
    assert all(row.time_s >= 0 and row.sparsity == pytest.approx(0.5) for row in report.matrices)


def test_true_sequential_groups_per_family():
    assert true_sequential_groups(LLAMA) == [("q", "k", "v"), ("o",), ("gate", "up"), ("down",)]
    assert true_sequential_groups(OPT) == [("q", "k", "v"), ("o",), ("fc1",), ("fc2",)]
    assert true_sequential_groups(GPT2) == [("qkv",), ("o",), ("fc1",), ("fc2",)]


def test_bad_calibration_tensors():
    with pytest.raises(DataError, match="needs calibration data"):
        check_calibration(None, "wanda")
    with pytest.raises(DataError, match="integer tensor"):
        check_calibration(torch.rand(2, 4), "wanda")
    with pytest.raises(DataError, match="shape"):
        check_calibration(torch.zeros(0, 4, dtype=torch.long), "wanda")
    with pytest.raises(DataError, match="wanda needs calibration"):
        compress_(tiny_model("llama"), WandaConfig(), None, progress=False)


# -- sample_calibration -----------------------------------------------------------------------------------------
DOCS = [
    "The river runs past the old mill and under the stone bridge before it reaches the sea. " * 6,
    "In the morning the baker opens the shop at six.",
    "A short one.",
]


def test_sample_from_long_documents(tiny_tok):
    docs = [DOCS[0] * 8, *DOCS[1:]]  # one document holding more than nsamples * seqlen tokens
    drawn = draw_calibration(tiny_tok, docs, nsamples=6, seqlen=32, seed=0)
    calib = drawn.ids
    assert calib.shape == (6, 32) and calib.dtype == torch.long
    long_doc = tiny_tok(docs[0])["input_ids"]
    assert len(long_doc) >= 6 * 32
    for row in calib.tolist():  # the reference's C4 sampling: windows of the long documents only
        assert any(long_doc[i : i + 32] == row for i in range(len(long_doc) - 31))
    # the reference's draw, step for step: a random long document, then a random start in it
    rng = random.Random(0)
    expected = []
    for _ in range(6):
        rng.randrange(1)
        start = rng.randint(0, len(long_doc) - 32 - 1)
        expected.append(long_doc[start : start + 32])
    assert calib.tolist() == expected
    cov = drawn.coverage
    assert cov.mode == "documents" and cov.documents == 3 and cov.documents_covered == 1
    assert cov.window_tokens == 192 and 32 <= cov.covered_tokens <= 192
    assert cov.source_tokens == sum(len(x) for x in tiny_tok(docs)["input_ids"])
    assert torch.equal(calib, sample_calibration(tiny_tok, docs, nsamples=6, seqlen=32, seed=0))
    assert not torch.equal(calib, sample_calibration(tiny_tok, docs, nsamples=6, seqlen=32, seed=1))


def test_one_long_paragraph_among_many_short_does_not_collapse(tiny_tok):
    # a user's text file: many short paragraphs and one longer than seqlen (but far from
    # nsamples * seqlen tokens): the windows must cover the file, not repeat that one paragraph
    short = [f"Clause {i}: the licensee may copy item {i} of the work." for i in range(300)]
    long_para = " ".join(f"Section {i} grants every right in part {i}." for i in range(8))
    docs = short[:150] + [long_para] + short[150:]
    ids = tiny_tok(long_para)["input_ids"]
    assert 2 * 64 < len(ids) < 3 * 64
    drawn = draw_calibration(tiny_tok, docs, nsamples=32, seqlen=64, seed=0)
    inside_long = [any(ids[i : i + 64] == row for i in range(len(ids) - 63)) for row in drawn.ids.tolist()]
    assert sum(inside_long) <= 2  # disjoint windows: at most 2 fit in the paragraph (was: all 32)
    cov = drawn.coverage
    assert cov.mode == "stream" and cov.documents == 301
    assert cov.covered_tokens == 32 * 64  # the stream has room (9.7k tokens): no two windows overlap
    assert cov.documents_covered > 60  # ~1 in 5 tokens of the file is in a window, so ~1 in 4 paragraphs
    clauses = {
        int(n) for row in drawn.ids.tolist() for n in re.findall(r"Clause (\d+):", tiny_tok.decode(row))
    }
    assert min(clauses) < 30 and max(clauses) >= 270  # spread from the start of the file to its end

    assert "distinct tokens" in str(cov) and 0 < cov.fraction <= 1


def test_short_stream_is_covered_end_to_end(tiny_tok):
    short = ["One short line.", "Another short line here.", "And a third short line of text."] * 4
    drawn = draw_calibration(tiny_tok, short, nsamples=12, seqlen=20, seed=0)
    stream = []
    for doc in tiny_tok(short)["input_ids"]:
        stream += doc + ([tiny_tok.eos_token_id] if doc[-1] != tiny_tok.eos_token_id else [])
    assert len(stream) < 12 * 20  # too short for disjoint windows: evenly spaced, first to last token
    rows = drawn.ids.tolist()
    assert rows[0] == stream[:20] and rows[-1] == stream[-20:]
    assert drawn.coverage.covered_tokens == drawn.coverage.source_tokens == len(stream)
    assert drawn.coverage.documents_covered == len(short)
    # the seed cannot matter here
    assert torch.equal(drawn.ids, draw_calibration(tiny_tok, short, nsamples=12, seqlen=20, seed=5).ids)


def test_sample_falls_back_to_concatenated_stream(tiny_tok):
    short = ["One short line.", "Another short line here.", "And a third short line of text."] * 4
    calib = sample_calibration(tiny_tok, short, nsamples=3, seqlen=20, seed=0)
    assert calib.shape == (3, 20)
    assert (calib == tiny_tok.eos_token_id).any()  # windows cross document boundaries


@pytest.mark.parametrize(
    "total,nsamples,seqlen", [(1000, 7, 100), (700, 7, 100), (650, 7, 100), (100, 3, 100)]
)
def test_spread_starts(total, nsamples, seqlen):
    for seed in range(20):
        starts = spread_starts(total, nsamples, seqlen, random.Random(seed))
        assert len(starts) == nsamples and starts == sorted(starts)
        assert starts[0] >= 0 and starts[-1] + seqlen <= total
        gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
        if total >= nsamples * seqlen:
            assert all(g >= seqlen for g in gaps)  # disjoint
        else:
            assert starts[0] == 0 and starts[-1] == total - seqlen and max(gaps) - min(gaps) <= 1
    firsts = {spread_starts(1000, 7, 100, random.Random(seed))[0] for seed in range(50)}
    assert len(firsts) > 5  # the gaps are random where there is room


def test_sample_errors(tiny_tok):
    with pytest.raises(DataError, match="no text"):
        sample_calibration(tiny_tok, ["", "  "], nsamples=2, seqlen=8)
    with pytest.raises(DataError, match=r"has \d+ tokens .* need at least seqlen=4096"):
        sample_calibration(tiny_tok, ["tiny text"], nsamples=2, seqlen=4096)
    with pytest.raises(ConfigError, match="nsamples"):
        sample_calibration(tiny_tok, DOCS, nsamples=0, seqlen=8)


# -- output replay: passes after the first serve the already-final linears' outputs ---------------------------
@pytest.mark.parametrize("family", ["llama", "gpt2", "opt", "falcon", "phi3", "gemma2"])
@pytest.mark.parametrize("method", ["sparsegpt", "gptq", "gptq-fake"])
def test_replay_gives_the_recomputed_result_bit_for_bit(family, method, monkeypatch):
    import slimkit.compress.calibrate as calibrate
    from slimkit.compress import build_config

    options = {"sparsegpt": dict(sparsity=0.5, true_sequential=True), "gptq": dict(bits=4, group_size=8)}
    options["gptq-fake"] = {**options["gptq"], "fake": True}
    config = build_config(method.removesuffix("-fake"), **options[method])
    calib = _calib(4)
    replays: list = []

    class Counted(calibrate._OutputReplay):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            replays.append(self)

    monkeypatch.setattr(calibrate, "_OutputReplay", Counted)
    states = []
    for budget in (0.0, 1024.0):
        monkeypatch.setattr(calibrate, "REPLAY_BUDGET_MIB", budget)
        model = tiny_model(family, seed=0)
        compress_(model, config, calib, chunk_size=2, progress=False)
        states.append(model.state_dict())
    recomputed, replayed = states
    assert recomputed.keys() == replayed.keys()
    for key, value in recomputed.items():
        assert torch.equal(value, replayed[key]), key
    assert replays and sum(r.served for r in replays) > 0  # the second run did serve linears


class _OutOfOrder(torch.nn.Module):
    """``b`` (group 1) runs before ``a`` (group 0) and feeds it: ``a``'s recorded output goes stale."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = (torch.nn.Linear(4, 4) for _ in range(3))

    def forward(self, x):
        return self.c(self.a(x + self.b(x)))


def test_replay_recomputes_a_linear_whose_input_changed():
    from slimkit.compress.calibrate import _OutputReplay

    torch.manual_seed(0)
    block = _OutOfOrder()
    groups = [{"a": block.a}, {"b": block.b}, {"c": block.c}]
    replay = _OutputReplay(block, groups)
    x = torch.randn(3, 4)
    outputs = []
    for position in range(len(groups) + 1):
        with replay.pass_(position) as new_chunk:
            new_chunk()
            outputs.append(block(x))
        if position < len(groups):  # "compress" the group: change its weights
            for module in groups[position].values():
                with torch.no_grad():
                    module.weight.mul_(0.5)
    # b's output is served in the last pass (its input is x); a's never is: b changed and ran before it
    assert replay.served == 1
    torch.testing.assert_close(outputs[-1], block(x), rtol=0, atol=0)


def test_replay_serves_in_forward_order():
    from slimkit.compress.calibrate import _OutputReplay

    torch.manual_seed(0)
    block = torch.nn.Sequential(
        torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 4), torch.nn.Linear(4, 4)
    )
    groups = [{"0": block[0]}, {"2": block[2]}, {"3": block[3]}]
    replay = _OutputReplay(block, groups)
    x = torch.randn(3, 4)
    for position in range(len(groups) + 1):
        with replay.pass_(position) as new_chunk:
            new_chunk()
            out = block(x)
        if position < len(groups):
            with torch.no_grad():
                next(iter(groups[position].values())).weight.mul_(0.5)
    assert replay.served == 3  # block 0 in passes 2 and 3, block 2 in pass 3
    assert torch.equal(out, block(x))


def test_replay_budget_is_validated():
    model = tiny_model("llama", seed=0)
    targets = select_prune_targets(model, WandaConfig())
    with pytest.raises(ConfigError, match="replay_budget_mib"):
        run_sequential_(model, _Recorder(), _calib(2), targets, replay_budget_mib=-1, progress=False)
