"""obspy-level API: Traces and Streams in, tokens or Traces out (ids and start times kept)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .model import EncodedWaveform, EQCodec
from .preprocess import SAMPLING_RATE, contiguous_traces, trace_to_codec_input


@dataclass
class EncodedTrace:
    """One trace's tokens, side information and identity.

    encoded: EncodedWaveform with batch size 1 (codes [1, K, T], gain [1, T])
    trace_id: NET.STA.LOC.CHA; starttime: obspy UTCDateTime of sample 0
    """

    encoded: EncodedWaveform
    trace_id: str
    starttime: object

    @property
    def original_sampling_rate(self) -> float:
        """Rate of the input before resampling to 40 Hz (kept with the tokens: encoded.source_rate)."""
        return self.encoded.source_rate

    @property
    def codes(self) -> np.ndarray:
        """[K, T] int16 codes."""
        return self.encoded.codes[0].cpu().numpy().astype(np.int16)

    @property
    def gain(self) -> np.ndarray:
        """[T] uint8 gain levels."""
        return self.encoded.gain[0].cpu().numpy().astype(np.uint8)


def encode_trace(codec: EQCodec, trace, *, allow_clipped: bool = False, beam_width: int = 1) -> EncodedTrace:
    """Check, resample to 40 Hz and encode one obspy Trace (beam_width: see EQCodec.encode)."""
    return encode_samples(codec, trace, trace_to_codec_input(trace, allow_clipped=allow_clipped),
                          beam_width=beam_width)


def encode_samples(codec: EQCodec, trace, samples: np.ndarray, *, beam_width: int = 1) -> EncodedTrace:
    """Encode `samples`, the trace's data already checked and at 40 Hz (trace_to_codec_input), keeping its id and times."""
    encoded = codec.encode(samples, beam_width=beam_width)
    encoded.source_rate = float(trace.stats.sampling_rate)
    return EncodedTrace(encoded, trace.id, trace.stats.starttime)


def decode_trace(codec: EQCodec, encoded: EncodedTrace, num_codebooks: int | None = None):
    """EncodedTrace -> obspy Trace at 40 Hz in the input's physical units, same id and start time."""
    import obspy

    samples = codec.decode(encoded.encoded, num_codebooks)[0].cpu().numpy()
    net, sta, loc, cha = encoded.trace_id.split(".")
    header = {"network": net, "station": sta, "location": loc, "channel": cha,
              "starttime": encoded.starttime, "sampling_rate": SAMPLING_RATE}
    return obspy.Trace(samples.astype(np.float64), header=header)


def encode_stream(codec: EQCodec, stream, *, source: str = "stream", allow_clipped: bool = False,
                  beam_width: int = 1) -> list[EncodedTrace]:
    """Encode every channel of a Stream, its touching pieces joined (gaps are refused: split the stream first)."""
    return [encode_trace(codec, tr, allow_clipped=allow_clipped, beam_width=beam_width)
            for tr in contiguous_traces(stream, source)]


def reconstruct_stream(codec: EQCodec, stream, num_codebooks: int | None = None, *,
                       source: str = "stream", allow_clipped: bool = False, beam_width: int = 1):
    """Encode and decode a Stream from the first k codebooks: the Stream the codec's tokens carry."""
    import obspy

    k = codec.check_num_codebooks(num_codebooks)
    encoded = encode_stream(codec, stream, source=source, allow_clipped=allow_clipped, beam_width=beam_width)
    return obspy.Stream([decode_trace(codec, e, k) for e in encoded])
