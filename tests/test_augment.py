"""Seeded augmented copies in token corpora (tokenized_data.augment and `eqcodec tokenize --augment-copies`)."""

from __future__ import annotations

import numpy as np
import pytest

from tokenized_data.augment import Augmentation, augment, bandpass, time_stretch


def noise(n=4000, seed=0):
    return np.random.default_rng(seed).normal(size=n)


def test_draws_depend_only_on_seed_unit_segment_and_copy():
    settings = Augmentation(copies=3, seed=5)
    a, da = augment(noise(), settings, settings.rng("file.mseed", 0, 1))
    b, db = augment(noise(), settings, settings.rng("file.mseed", 0, 1))
    assert np.array_equal(a, b) and da == db
    c, _ = augment(noise(), settings, settings.rng("file.mseed", 0, 2))
    d, _ = augment(noise(), Augmentation(copies=3, seed=6), Augmentation(seed=6).rng("file.mseed", 0, 1))
    assert not np.array_equal(a[: min(len(a), len(c))], c[: min(len(a), len(c))])
    assert not np.array_equal(a[: min(len(a), len(d))], d[: min(len(a), len(d))])


def test_time_stretch_scales_duration_and_frequency():
    t = np.arange(4000) / 40.0
    x = np.sin(2 * np.pi * 2.0 * t)
    y, factor = time_stretch(x, 1.25)
    assert factor == pytest.approx(1.25) and len(y) == pytest.approx(len(x) * 1.25, abs=2)
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    peak_hz = np.fft.rfftfreq(len(y), 1 / 40.0)[spectrum.argmax()]
    assert peak_hz == pytest.approx(2.0 / 1.25, abs=0.02)


def test_bandpass_removes_what_lies_outside_the_band():
    t = np.arange(8000) / 40.0
    low, inside = np.sin(2 * np.pi * 0.05 * t), np.sin(2 * np.pi * 3.0 * t)
    y = bandpass(low + inside, 0.5, 8.0)
    assert np.std(y[1000:-1000] - inside[1000:-1000]) < 0.05


def test_every_transform_is_described():
    settings = Augmentation(copies=2, bandpass_probability=1.0, flip_probability=1.0)
    x = noise()
    y, applied = augment(x, settings, settings.rng("k", 0, 1))
    assert "bandpass" in applied and "polarity flipped" in applied and "amplitude" in applied
    assert np.isfinite(y).all()


def test_copies_must_be_at_least_one():
    with pytest.raises(ValueError, match="copies"):
        Augmentation(copies=0)


def test_tokenize_writes_the_copies_beside_the_originals(codec, tmp_path):
    """Each segment gives `copies` sets of windows; originals keep augmentation ""; copies share the event key."""
    import obspy

    from tokenized_data import Preprocessing, load_tokenized, tokenize

    path = tmp_path / "rjob.mseed"
    obspy.read().write(str(path), format="MSEED")
    plain = tokenize([str(path)], tmp_path / "plain", prep=Preprocessing(window_seconds=10), progress=False)
    prep = Preprocessing(window_seconds=10, augmentation=Augmentation(copies=3, seed=1))
    summary = tokenize([str(path)], tmp_path / "aug", prep=prep, progress=False)
    assert summary.corpus is not None and plain.corpus is not None
    originals, corpus = load_tokenized(tmp_path / "plain").dataset, load_tokenized(tmp_path / "aug").dataset
    kinds = corpus["augmentation"]
    assert kinds.count("") == len(originals) and len(corpus) > 2 * len(originals)
    assert set(corpus["event_key"]) == set(originals["event_key"])
    first = [row for row in corpus if row["augmentation"] == ""]
    assert [r["codes"] for r in first] == originals["codes"]  # the originals are untouched
    assert load_tokenized(tmp_path / "aug").metadata["preprocessing"]["augmentation"]["copies"] == 3
