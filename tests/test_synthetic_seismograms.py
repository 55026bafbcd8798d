"""The seeded seismogram generator for LM pretraining (tasks.synthetic_seismograms)."""

import json

import numpy as np
import obspy
import pytest

from tasks.synthetic_seismograms import coloured_noise, seismogram, write_seismogram_set


def test_a_trace_is_rebuilt_from_its_seed_and_index_alone():
    a, pa = seismogram(np.random.default_rng([3, 7]), duration_s=60)
    b, pb = seismogram(np.random.default_rng([3, 7]), duration_s=60)
    c, _ = seismogram(np.random.default_rng([3, 8]), duration_s=60)
    assert len(a) == 60 * 40 and np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
    assert pa == pb
    assert not np.allclose(a, c)


def test_noise_has_its_secondary_microseism_peak():
    rng = np.random.default_rng(0)
    x, parameters = coloured_noise(rng, 40 * 3600)
    f, psd = __import__("scipy.signal", fromlist=["welch"]).welch(x, fs=40, nperseg=40 * 200)
    peak = parameters["secondary_microseism_hz"]
    at_peak = psd[np.argmin(abs(f - peak))]
    # an octave above the peak the spectrum is well below it, whatever the power law's slope
    above = psd[np.argmin(abs(f - 4 * peak))]
    assert at_peak > 5 * above
    assert np.sqrt(np.mean(x**2)) == pytest.approx(1.0)


def test_events_raise_the_envelope_where_the_parameters_put_them():
    # find a trace with one strong local event whose S onset lies inside the trace
    for index in range(200):
        x, parameters = seismogram(np.random.default_rng([0, index]), duration_s=128)
        events = parameters["events"]
        if (len(events) == 1 and events[0]["kind"] == "local" and events[0]["snr_db"] > 25
                and "reverberation" not in events[0]
                and 20 < events[0]["p_onset_s"] + events[0]["s_minus_p_s"] < 100 and events[0]["p_onset_s"] > 15):
            break
    else:
        pytest.fail("no strong local event in 200 traces")
    s = int((events[0]["p_onset_s"] + events[0]["s_minus_p_s"]) * 40)
    p = int(events[0]["p_onset_s"] * 40)
    before = np.sqrt(np.mean(x[p - 400 : p - 40] ** 2))
    after = np.sqrt(np.mean(x[s : s + 80] ** 2))
    assert after > 5 * before


def test_a_written_set_reads_back_and_tokenizes(tmp_path):
    from tokenized_data import Preprocessing, tokenize

    out = write_seismogram_set(5, tmp_path / "set", seed=1, duration_s=40, traces_per_file=2)
    manifest = json.loads((out / "manifest.json").read_text())
    files = sorted((out / "waveforms").glob("*.mseed"))
    assert len(files) == 3 and len(manifest["traces"]) == 5
    stream = obspy.read(str(files[0]))
    assert [tr.id for tr in stream] == ["SY.00000..HHZ", "SY.00001..HHZ"]
    expected, _ = seismogram(np.random.default_rng([1, 1]), duration_s=40)
    np.testing.assert_allclose(stream[1].data, expected.astype(np.float32))
    summary = tokenize([str(out / "waveforms")], tmp_path / "corpus", prep=Preprocessing(window_seconds=40),
                       progress=False)
    assert summary.corpus is not None and summary.windows == 5 and not summary.failures
    with pytest.raises(FileExistsError, match="already exists"):
        write_seismogram_set(2, out)
    assert len(list(tmp_path.iterdir())) == 2  # no staging folder left behind
