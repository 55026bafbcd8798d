"""The seismic token LM: causality under the delay pattern, KV cache, generation, save/load."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from codec.model import CheckpointError
from lm.model import IGNORE_INDEX, SeismicLM, lay_out_for_generation, load_config, load_lm

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def lm():
    config = load_config("tiny")
    config.initializer_range = 0.2  # large random weights: every input visibly moves the logits
    torch.manual_seed(0)
    return SeismicLM(config).eval()


def random_frames(lm, batch, frames, seed=0):
    """[B, S, T] valid tokens for every stream."""
    gen = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randint(0, v, (batch, frames), generator=gen) for v in lm.config.vocab_sizes], dim=1)


def logits_of(lm, frames):
    inputs, _ = lm.prepare_batch(frames)
    with torch.no_grad():
        return lm(inputs).logits


def test_tiny_config_shapes(lm):
    config = lm.config
    assert config.num_streams == 9 and config.vocab_sizes == [256] + [1024] * 8
    frames = random_frames(lm, 2, 12)
    inputs, labels = lm.prepare_batch(frames)
    assert inputs.shape == labels.shape == (2, 9, 12 + 8)
    out = lm(inputs, labels)
    assert [tuple(x.shape) for x in out.logits] == [(2, 20, v) for v in config.vocab_sizes]
    assert out.stream_losses.shape == (9,)
    # Each stream scores exactly its 12 frames; the corners of the delay pattern are ignored.
    assert ((labels != IGNORE_INDEX).sum(dim=(0, 2)) == 2 * 12).all()
    # Random weights: cross-entropy near log(vocab) for each stream, not zero.
    assert out.loss.item() > 3.0


def test_mask_removes_padded_frames_from_labels(lm):
    frames = random_frames(lm, 1, 10)
    mask = torch.ones(1, 10, dtype=torch.bool)
    mask[0, 7:] = False
    _, labels = lm.prepare_batch(frames, mask)
    assert ((labels != IGNORE_INDEX).sum(dim=(0, 2)) == 7).all()


@pytest.mark.parametrize("seed", range(6))
def test_prediction_never_depends_on_its_own_or_later_steps(lm, seed):
    """Token s of frame t is predicted at delayed step t + s: changing every token at that step or later
    leaves its distribution unchanged; changing one token of the step before changes it."""
    gen = torch.Generator().manual_seed(100 + seed)
    S, T = lm.config.num_streams, 14
    frames = random_frames(lm, 1, T, seed)
    s = int(torch.randint(0, S, (1,), generator=gen))
    t = int(torch.randint(1, T, (1,), generator=gen))
    step = t + s
    steps = torch.arange(T).view(1, T) + torch.arange(S).view(S, 1)  # [S, T] delayed step of each token
    other = random_frames(lm, 1, T, seed + 1000)
    later = torch.where(steps >= step, other, frames)
    assert not torch.equal(later, frames)
    before, after = logits_of(lm, frames)[s][0, step], logits_of(lm, later)[s][0, step]
    torch.testing.assert_close(after, before, rtol=0, atol=1e-5)

    earlier = frames.clone()  # one token at step - 1: stream s2 of frame step - 1 - s2
    s2 = max(0, step - T)
    earlier[0, s2, step - 1 - s2] = (frames[0, s2, step - 1 - s2] + 1) % lm.config.vocab_sizes[s2]
    assert (logits_of(lm, earlier)[s][0, step] - before).abs().max() > 1e-4


def test_gain_forecast_of_frame_t_ignores_frames_t_and_later(lm):
    """The brief's frame-level statement for the gain stream: frames t, t+1, ... (all streams) do not matter."""
    T, t = 16, 9
    frames = random_frames(lm, 1, T)
    changed = frames.clone()
    changed[:, :, t:] = random_frames(lm, 1, T - t, seed=7)
    gain_before = logits_of(lm, frames)[0][0, : t + 1]
    gain_after = logits_of(lm, changed)[0][0, : t + 1]
    torch.testing.assert_close(gain_after, gain_before, rtol=0, atol=1e-5)


def test_kv_cache_matches_full_forward(lm):
    inputs, _ = lm.prepare_batch(random_frames(lm, 2, 10))
    with torch.no_grad():
        full = lm(inputs).logits
        out = lm(inputs[:, :, :7], use_cache=True)
        cache, pieces = out.cache, [out.logits]
        for j in range(7, inputs.shape[-1]):
            out = lm(inputs[:, :, j : j + 1], cache=cache, use_cache=True)
            cache = out.cache
            pieces.append(out.logits)
    for s in range(lm.config.num_streams):
        torch.testing.assert_close(torch.cat([p[s] for p in pieces], dim=1), full[s], rtol=1e-4, atol=1e-5)


def test_greedy_generation_follows_the_full_forward_argmax(lm, monkeypatch):
    """With top_k=1, every generated token is the argmax of a full (uncached) forward pass over
    context + generated frames: the cached loop keeps the delay bookkeeping right. (The head in float32,
    as forward's: a random model's near-ties would otherwise round either way.)"""
    from lm import model as lm_model

    monkeypatch.setattr(lm_model, "_native_bfloat16", lambda: False)
    context = random_frames(lm, 2, 6)
    new = lm.generate_frames(context, 5, top_k=1)
    assert new.shape == (2, 9, 5)
    logits = logits_of(lm, torch.cat([context, new], dim=-1))
    for s in range(9):
        for t in range(6, 11):
            assert torch.equal(new[:, s, t - 6], logits[s][:, t + s].argmax(-1))


def test_sampling_is_seeded_valid_and_slides_past_the_window(lm):
    context = random_frames(lm, 3, 5)
    frames = 2 * lm.config.max_frames  # forces the cache to be rebuilt on a sliding window
    a = lm.generate_frames(context, frames, generator=torch.Generator().manual_seed(1), top_p=0.9)
    b = lm.generate_frames(context, frames, generator=torch.Generator().manual_seed(1), top_p=0.9)
    c = lm.generate_frames(context, frames, generator=torch.Generator().manual_seed(2), top_p=0.9)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == (3, 9, frames)
    for s, v in enumerate(lm.config.vocab_sizes):
        assert a[:, s].min() >= 0 and a[:, s].max() < v


def test_sampler_draws_from_the_softmax_of_each_stream():
    from lm.model import _Sampler

    logits = torch.tensor([[2.0, 0.0, 1.0, -1.0, 0.0, 1.0, 0.5, 3.0, 0.0, 0.0]])  # streams of 4, 3 and 3 tokens
    n = 40000
    batch = logits.expand(n, -1)
    tokens = _Sampler([4, 3, 3], [1.0] * 3, None, None, torch.Generator().manual_seed(0))(batch)
    assert tokens.shape == (n, 3)
    for s, stream_logits in enumerate(logits[0].split([4, 3, 3])):
        expected = stream_logits.softmax(-1)
        observed = torch.bincount(tokens[:, s], minlength=len(expected)).float() / n
        assert len(observed) == len(expected)  # never a padding column of a narrower stream
        torch.testing.assert_close(observed, expected, rtol=0, atol=0.01)
    top2 = _Sampler([4, 3, 3], [1.0] * 3, 2, None, torch.Generator().manual_seed(0))(batch)
    assert set(top2[:, 0].tolist()) == {0, 2} and set(top2[:, 1].tolist()) == {1, 2}
    assert set(top2[:, 2].tolist()) <= {0, 1, 2}
    top_p = _Sampler([4, 3, 3], [1.0] * 3, None, 0.5, torch.Generator().manual_seed(0))(batch)
    assert set(top_p[:, 0].tolist()) == {0} and set(top_p[:, 2].tolist()) == {0}
    # one temperature per stream: the first stream sharpened, the others as they were
    tempered = _Sampler([4, 3, 3], [0.5, 1.0, 1.0], None, None, torch.Generator().manual_seed(0))(batch)
    for s, (stream_logits, t) in enumerate(zip(logits[0].split([4, 3, 3]), [0.5, 1.0, 1.0])):
        observed = torch.bincount(tempered[:, s], minlength=len(stream_logits)).float() / n
        torch.testing.assert_close(observed, (stream_logits / t).softmax(-1), rtol=0, atol=0.01)


def test_generation_fast_path_gives_the_logits_of_the_plain_forward(codec):
    """The shipped LM on real tokens (obspy's example, encoded by the shipped codec): the cached
    generation step (next_logits, weights re-laid for generation) gives forward()'s logits."""
    import copy

    import obspy
    from transformers import DynamicCache

    from lm.generate import context_samples
    from tokenized_data import to_streams

    shipped = load_lm()
    contexts = [context_samples(trace, 20)[0] for trace in obspy.read()]
    encoded = codec.encode(np.stack(contexts))
    inputs, _ = shipped.prepare_batch(to_streams(encoded.codes, encoded.gain))  # [3, 9, 28]
    with torch.no_grad():
        plain = torch.cat(shipped(inputs).logits, dim=-1)  # [3, L, sum(vocab_sizes)]

    fast = copy.deepcopy(shipped)
    lay_out_for_generation(fast)
    assert all(m.weight.stride(0) == 1 for m in fast.modules() if isinstance(m, torch.nn.Linear))
    for name, tensor in fast.state_dict().items():
        assert torch.equal(tensor, shipped.state_dict()[name]), name
    cache, prompt = DynamicCache(), 10
    with torch.inference_mode():
        steps = [fast.next_logits(inputs[:, :, :prompt], cache)]
        steps += [fast.next_logits(inputs[:, :, j : j + 1], cache) for j in range(prompt, inputs.shape[-1])]
    torch.testing.assert_close(torch.stack(steps, dim=1), plain[:, prompt - 1 :], rtol=1e-5, atol=1e-4)


def test_generation_head_is_bfloat16_only_where_native_and_keeps_the_distributions(codec, monkeypatch):
    """The head's product in generation steps: a bfloat16 copy where the CPU has native bfloat16, lm_head's own
    float32 weight where it has not; the bfloat16 logits give the shipped LM's next-token distributions on real
    tokens within a small KL divergence of float32's, and float32 logits either way."""
    import obspy
    from transformers import DynamicCache

    from lm import model as lm_model
    from lm.generate import context_samples
    from tokenized_data import to_streams

    shipped = load_lm()
    monkeypatch.setattr(lm_model, "_native_bfloat16", lambda: False)
    assert shipped.generation_head() is shipped.lm_head.weight
    monkeypatch.setattr(lm_model, "_native_bfloat16", lambda: True)
    head = shipped.generation_head()
    assert head.dtype == torch.bfloat16 and head.shape == shipped.lm_head.weight.shape

    encoded = codec.encode(np.stack([context_samples(trace, 20)[0] for trace in obspy.read()]))
    inputs, _ = shipped.prepare_batch(to_streams(encoded.codes, encoded.gain))
    with torch.inference_mode():
        exact = shipped.next_logits(inputs, DynamicCache())
        rounded = shipped.next_logits(inputs, DynamicCache(), head)
    assert rounded.dtype == torch.float32
    for logits_exact, logits_rounded in zip(exact.split(shipped.config.vocab_sizes, -1),
                                            rounded.split(shipped.config.vocab_sizes, -1)):
        kl = torch.sum(logits_exact.softmax(-1) * (logits_exact.log_softmax(-1) - logits_rounded.log_softmax(-1)), -1)
        assert float(kl.max()) < 1e-3, kl
        assert not torch.equal(logits_exact, logits_rounded)  # the product did run in bfloat16


def test_model_still_trains_after_generating():
    """generate_frames re-lays the weights (lay_out_for_generation) inside inference mode:
    they must stay ordinary trainable tensors, and the optimizer's Parameters the same objects."""
    config = load_config("tiny")
    torch.manual_seed(0)
    model = SeismicLM(config)
    parameters = list(model.parameters())
    optimizer = torch.optim.SGD(parameters, lr=0.1)
    context = random_frames(model, 2, 6)
    model.generate_frames(context, 3)
    assert model.lm_head.weight.stride(0) == 1 and not model.lm_head.weight.is_inference()
    assert all(a is b for a, b in zip(parameters, model.parameters()))
    inputs, labels = model.prepare_batch(context)
    before = model.lm_head.weight.detach().clone()
    model(inputs, labels).loss.backward()
    optimizer.step()
    assert model.training and not torch.equal(model.lm_head.weight, before)


def test_save_and_load_round_trip(lm, tmp_path):
    lm.config.codec_id = "0123456789abcdef"
    lm.save_pretrained(tmp_path / "lm")
    loaded = load_lm(tmp_path / "lm")
    assert loaded.config.codec_id == "0123456789abcdef"
    assert (tmp_path / "lm" / "model.safetensors").is_file()
    frames = random_frames(lm, 1, 8)
    for a, b in zip(logits_of(lm, frames), logits_of(loaded, frames)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_broken_checkpoints_raise_checkpoint_error(lm, tmp_path):
    with pytest.raises(CheckpointError, match="config.json is missing"):
        load_lm(tmp_path / "nothing")
    lm.save_pretrained(tmp_path / "corrupt")
    (tmp_path / "corrupt" / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="corrupt or incompatible"):
        load_lm(tmp_path / "corrupt")
    lm.save_pretrained(tmp_path / "other")  # weights of one config, config.json of another
    config = json.loads((tmp_path / "other" / "config.json").read_text())
    config["hidden_size"] = 64
    (tmp_path / "other" / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=str(tmp_path / "other")):
        load_lm(tmp_path / "other")
    (tmp_path / "codec").mkdir()
    (tmp_path / "codec" / "config.json").write_text(json.dumps({"model_type": "eqcodec"}))
    (tmp_path / "codec" / "model.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="model_type"):
        load_lm(tmp_path / "codec")


def test_shipped_configs_load_and_base_fits_the_size_limit():
    base = load_config("base")
    model = SeismicLM(base)
    params = sum(p.numel() for p in model.parameters())
    assert params * 2 <= 30e6  # fp16 on disk, see lm/configs/README
    assert load_config("tiny").hidden_size < base.hidden_size
    with pytest.raises(CheckpointError, match="not found"):
        load_config("no-such-config")


def test_sampling_defaults_are_saved_with_the_lm_and_used_by_generation(tmp_path):
    from lm.model import SeismicLM, load_config

    lm = SeismicLM(load_config("tiny"))
    lm.generation_config.top_k = 1  # greedy: every sample the same
    lm.generation_config.num_return_sequences = 3
    lm.save_pretrained(tmp_path)
    loaded = load_lm(tmp_path)
    assert (tmp_path / "generation_config.json").is_file()
    # no gain temperature stored: the gain stream takes the temperature
    assert loaded.sampling_settings() == {"temperature": 0.8, "gain_temperature": 0.8, "top_k": 1, "top_p": None,
                                          "samples": 3, "frame_grids": 1}
    assert loaded.sampling_settings(top_k=7)["top_k"] == 7  # an explicit value wins
    lm.generation_config.gain_temperature = 0.6
    lm.save_pretrained(tmp_path)
    assert load_lm(tmp_path).sampling_settings()["gain_temperature"] == 0.6
    assert load_lm(tmp_path).sampling_settings(gain_temperature=1.0)["gain_temperature"] == 1.0
    import json

    from lm.model import PRETRAINED_DIR

    shipped = load_lm()
    stored = json.loads((PRETRAINED_DIR / "generation_config.json").read_text())
    settings = shipped.sampling_settings()
    assert (settings["temperature"], settings["top_k"]) == (stored["temperature"], stored["top_k"])
    assert settings["gain_temperature"] == stored.get("gain_temperature", stored["temperature"])
    assert settings["samples"] == stored["num_return_sequences"]
    assert settings["frame_grids"] == stored.get("frame_grids", 1)
