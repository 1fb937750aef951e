"""The copy probe's induction measurement tells a copying model from one that does not copy.

Positive control: SmolLM2-135M (a pretrained LM, which has induction heads) copies repeated sequences
of the world's invented words; negative control: the default world model (docs/factworld.md, "The
default model does not read from its context") does no better on the second half than on the first.
Measured here: SmolLM2 0.95 (no-copy floor 0.17), the default model 0.14 (floor 0.14).
"""

from __future__ import annotations

import pytest

from slimkit.data.factworld import WorldConfig, generate_world
from slimkit.models.reader import induction_accuracy, world_words


@pytest.fixture(scope="module")
def words():
    return world_words(generate_world(WorldConfig()))


@pytest.mark.real_model
def test_pretrained_model_copies_invented_words(words):
    from slimkit.models import load_model

    model, tok = load_model("smollm2-135m")
    copy, floor = induction_accuracy(model.eval(), tok, words)
    assert copy >= 0.8 and copy >= floor + 0.5, (copy, floor)


def test_default_world_model_does_not_copy(default_pair, words):
    model, tok = default_pair
    copy, floor = induction_accuracy(model, tok, words)
    assert copy < 0.35 and abs(copy - floor) < 0.15, (copy, floor)
