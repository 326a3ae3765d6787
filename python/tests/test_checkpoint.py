"""Checkpoints of lq.torch models: save, load into a fresh model, restore
torch's RNG state, continue: bit for bit the uninterrupted run."""

import io

import pytest
import torch

import lq
import lq.torch as lqt


def _model(**options):
    model = torch.nn.Sequential(torch.nn.Linear(12, 24), torch.nn.ReLU(),
                                torch.nn.Linear(24, 3))
    return lqt.quantize_model(model, **options)


def _batches(count):
    data = torch.Generator().manual_seed(11)
    return [(torch.randn(16, 12, generator=data),
             torch.randint(0, 3, (16,), generator=data)) for _ in range(count)]


def _train(model, optimizer, batches):
    for x, labels in batches:
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), labels).backward()
        optimizer.step()


def _optimizer(model):
    return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)


def _checkpoint(model, optimizer):
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "rng": torch.get_rng_state()}, buffer)
    buffer.seek(0)
    return buffer


def _resume(buffer, options, load_lq_state=True):
    state = torch.load(buffer)
    torch.manual_seed(1234)  # a fresh model: other weights, other streams
    model = _model(**options)
    optimizer = _optimizer(model)
    weights = state["model"]
    if not load_lq_state:
        weights = {k: v for k, v in weights.items()
                   if not k.endswith("_extra_state")}
    model.load_state_dict(weights)
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"])
    return model, optimizer


@pytest.mark.parametrize("options", [{}, {"hindsight": True},
                                     {"samples": 2, "hindsight": True}])
def test_resumed_training_equals_the_uninterrupted_run(options):
    batches = _batches(8)
    torch.manual_seed(0)
    model = _model(**options)
    optimizer = _optimizer(model)
    _train(model, optimizer, batches[:4])
    saved = _checkpoint(model, optimizer)
    _train(model, optimizer, batches[4:])

    resumed, resumed_optimizer = _resume(saved, options)
    assert resumed[0].stream == model[0].stream
    _train(resumed, resumed_optimizer, batches[4:])
    for a, b in zip(model.parameters(), resumed.parameters()):
        assert torch.equal(a, b)
    for i in (0, 2):
        assert resumed[i].max_estimate == model[i].max_estimate
        if options.get("hindsight"):
            assert resumed[i].max_estimate is not None

    # Without lq's state the continuation differs (the streams and
    # estimates are the fresh model's): the state is what makes it exact.
    saved.seek(0)
    stateless, stateless_optimizer = _resume(saved, options,
                                             load_lq_state=False)
    _train(stateless, stateless_optimizer, batches[4:])
    assert not torch.equal(stateless[0].weight, model[0].weight)


def test_state_dict_carries_the_lq_state():
    torch.manual_seed(3)
    layer = lqt.Linear(4, 2, hindsight=True)
    layer.max_estimate = 0.125
    layer.skipped_steps = 2
    state = layer.state_dict()
    assert state["_extra_state"] == {
        "format": "lq.torch.Linear", "version": 1, "stream": layer.stream,
        "max_estimate": 0.125, "skipped_steps": 2}
    other = lqt.Linear(4, 2)
    other.load_state_dict(state)
    assert (other.stream, other.max_estimate, other.skipped_steps) == (
        layer.stream, 0.125, 2)


def test_foreign_or_newer_state_is_refused():
    layer = lqt.Linear(4, 2)
    state = layer.state_dict()
    state["_extra_state"] = dict(state["_extra_state"], version=2)
    with pytest.raises(lq.Error, match="version 2 is not 1"):
        layer.load_state_dict(state)
    state["_extra_state"] = {"format": "something else"}
    with pytest.raises(lq.Error, match="not an lq.torch.Linear state"):
        layer.load_state_dict(state)
    # A torch.nn.Linear's state (a pretrained fp32 model) loads strictly,
    # as into torch.nn.Linear; the lq state stays the layer's own.
    plain = torch.nn.Linear(4, 2)
    stream = layer.stream
    layer.load_state_dict(plain.state_dict())
    assert torch.equal(layer.weight, plain.weight)
    assert layer.stream == stream
    with pytest.raises(RuntimeError, match="Missing key.*bias"):
        layer.load_state_dict({"weight": plain.weight})


def test_lq_state_of_a_model_round_trips_and_checks_its_layers():
    torch.manual_seed(4)
    model = _model(hindsight=True)
    model[2].max_estimate = 0.25
    state = lqt.lq_state(model)
    assert sorted(state) == ["0", "2"]
    other = _model()
    lqt.load_lq_state(other, state)
    assert other[2].max_estimate == 0.25
    assert other[0].stream == model[0].stream
    with pytest.raises(lq.Error, match=r"holds layers \['0'\], the model "
                                       r"\['0', '2'\]"):
        lqt.load_lq_state(other, {"0": state["0"]})
