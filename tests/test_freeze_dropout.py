"""freeze.dropout: dropout inside a wholly frozen layer group runs in eval mode ("follow"),
through every ``model.train()`` and across thaws, or stays active ("active")."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError
from support import engine_for, minilm_spec, resolved

from thaw.caching.prefix import Split, run_prefix
from thaw.freezing.layer_rows import epoch_entry, live_view
from thaw.freezing.plan import plan_table
from thaw.spec import JobSpec

THAW_LAYER3 = [{"at_epoch": 2, "unfreeze": ["bert.encoder.layer.3"]}]


def _modes(model: torch.nn.Module) -> dict[str, bool]:
    return {name: m.training for name, m in model.named_modules()}


def test_follow_puts_frozen_dropout_in_eval_and_thawing_puts_it_back_in_train():
    engine = engine_for(minilm_spec(schedule=THAW_LAYER3))
    model = engine.model
    model.train()
    modes = _modes(model)
    for i in range(4):
        for sub in ("attention.self.dropout", "attention.output.dropout", "output.dropout"):
            assert modes[f"bert.encoder.layer.{i}.{sub}"] is False, (i, sub)
        # the attention module passes dropout_p to SDPA only when it is training itself
        assert modes[f"bert.encoder.layer.{i}.attention.self"] is False
    assert modes["bert.embeddings.dropout"] is False
    assert modes["bert.embeddings"] is False
    for i in (4, 5):
        assert modes[f"bert.encoder.layer.{i}.attention.self.dropout"] is True
        assert modes[f"bert.encoder.layer.{i}.attention.self"] is True
    assert modes["dropout"] is True  # the classifier's dropout belongs to no layer group
    # frozen Linear layers are not pinned: a pinned owner sets only its own flag
    assert modes["bert.encoder.layer.0.attention.self.query"] is True

    model.eval()
    assert not any(_modes(model).values())
    model.train()
    assert _modes(model) == modes

    engine.advance(engine.timeline.steps_per_epoch)  # epoch 2: layer 3 thaws
    assert engine.phase == 1
    model.train()
    after = _modes(model)
    assert after["bert.encoder.layer.3.output.dropout"] is True
    assert after["bert.encoder.layer.3.attention.self"] is True
    assert after["bert.encoder.layer.2.output.dropout"] is False

    rows = {
        r["name"]: r
        for r in epoch_entry(engine.index, live_view(engine, {}), epoch=2, phase=1)["dropout"]
    }
    assert rows["bert.encoder.layer.3.output.dropout"] == {
        "name": "bert.encoder.layer.3.output.dropout",
        "type": "Dropout",
        "group": 4,
        "p": 0.1,
        "mode": "train",
    }
    assert rows["bert.encoder.layer.2.output.dropout"]["mode"] == "eval"
    assert rows["dropout"]["group"] is None and rows["dropout"]["mode"] == "train"


def test_a_frozen_prefix_in_train_mode_gives_the_same_output_every_time_with_follow():
    split = Split(5, ("bert.embeddings", *(f"bert.encoder.layer.{i}" for i in range(4))))
    inputs = {
        "input_ids": torch.randint(1000, 5000, (2, 12), generator=torch.Generator().manual_seed(0)),
        "attention_mask": torch.ones(2, 12, dtype=torch.long),
    }
    outputs = {}
    for mode in ("follow", "active"):
        spec = minilm_spec(freeze={**minilm_spec().freeze.model_dump(), "dropout": mode})
        model = engine_for(spec).model
        model.train()
        torch.manual_seed(1)
        first = run_prefix(model, split, inputs)
        second = run_prefix(model, split, inputs)
        outputs[mode] = (first, second)
    assert torch.equal(*outputs["follow"])
    assert not torch.equal(*outputs["active"])


def test_active_keeps_today_behaviour_and_the_plan_says_how_to_engage_the_cache():
    spec = minilm_spec(freeze={**minilm_spec().freeze.model_dump(), "dropout": "active"})
    engine = engine_for(spec)
    engine.model.train()
    assert all(_modes(engine.model).values())

    table = plan_table(resolved(spec, meta=True), num_samples=16)
    first = table["feature_cache"][0]
    assert first["engages"] is False
    assert first["reason"] == (
        "bert.embeddings.dropout (Dropout, p=0.1) draws random numbers in training, so the "
        "frozen prefix is not deterministic and its output cannot be reused; freeze.dropout "
        "'follow' runs it in eval mode"
    )
    assert {r["mode"] for r in table["epochs"][0]["dropout"]} == {"train"}

    follow = plan_table(resolved(minilm_spec(), meta=True), num_samples=16)
    assert follow["feature_cache"][0]["engages"] is True
    modes = {r["name"]: r["mode"] for r in follow["epochs"][0]["dropout"]}
    assert modes["bert.encoder.layer.3.output.dropout"] == "eval"
    assert modes["bert.encoder.layer.4.output.dropout"] == "train"


def test_dropout_policy_is_part_of_the_normalized_spec():
    spec = minilm_spec()
    assert spec.normalized()["freeze"]["dropout"] == "follow"
    body = {**spec.normalized(), "freeze": {**spec.normalized()["freeze"], "dropout": "sometimes"}}
    with pytest.raises(
        ValidationError, match=r"freeze\.dropout\n  Input should be 'follow' or 'active'"
    ):
        JobSpec.model_validate(body)
