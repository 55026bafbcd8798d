"""The dataset card (README.md) written into every corpus folder: what is inside, from what, how."""

from __future__ import annotations

import json

from codec.checkpoints import codec_config_from_dict, codec_version

#: Stations listed by name in the card (all are in the metadata).
MAX_STATIONS_LISTED = 60


def dataset_card(metadata: dict, name: str) -> str:
    """Markdown card with a Hugging Face YAML header, from a corpus's metadata."""
    counts = metadata.get("counts", {})
    codec = metadata["codec"]
    config = codec["config"]
    prep = metadata.get("preprocessing", {})
    run = metadata.get("run")
    stations = counts.get("stations", [])
    listed = ", ".join(stations[:MAX_STATIONS_LISTED]) + (" ..." if len(stations) > MAX_STATIONS_LISTED else "")
    K, C = config["num_codebooks"], config["codebook_size"]
    rate = [round(b) for b in _bits_per_second(config)]
    source = metadata.get("source", {})
    if metadata.get("parts"):
        origin = "merged from: " + ", ".join(part["path"] for part in metadata["parts"])
    elif source.get("sds"):
        sds = source["sds"]
        origin = f"SDS archive `{sds['root']}`, {sds['start']} to {sds['end']}, channels `{prep.get('seed_id', '*')}`"
    else:
        origin = "files: " + ", ".join(f"`{i}`" for i in source.get("inputs", []))
    version = codec_version(codec_config_from_dict(codec["config"])) if "config" in codec else "(unknown version)"
    lines = [
        "---",
        f"pretty_name: {name} (EQcodec seismic tokens)",
        "tags: [seismology, earthquake, waveform, tokens, eqcodec]",
        "---",
        "",
        f"# {name}: seismic waveforms as EQcodec tokens",
        "",
        f"Each row is one window of one seismic channel, coded by EQcodec {version} into "
        f"{K} residual-VQ codebooks of {C} entries per 1-s frame plus an 8-bit gain level per frame "
        f"({rate[0]}-{rate[-1]} bits/s for 1-{K} codebooks).",
        "",
        "| | |",
        "|---|---|",
        f"| source | {origin} |",
        f"| windows | {counts.get('windows', 0)} |",
        f"| channel-hours | {counts.get('channel_hours', 0):.3f} |",
        f"| stations | {len(stations)}: {listed} |",
        f"| channels | {counts.get('channels', 0)} (codes: {', '.join(counts.get('channel_codes', []))}) |",
        f"| time span | {counts.get('first_sample', '-')} to {counts.get('last_sample', '-')} |",
        f"| codec | `{codec['id']}` ({codec.get('checkpoint', '')}) |",
    ]
    if "window_seconds" in prep:
        lines.append(f"| windowing | {prep['window_seconds']} s every {prep['hop_seconds']} s, "
                     f"last window kept if >= {prep['min_window_seconds']} s |")
    if run:
        lines.append(f"| files | {run['files']} read, {run['files_failed']} with problems |")
    if "split" in metadata:
        split = metadata["split"]
        lines.append(f"| split | {split['part']} part of a split by {split['by']} "
                     f"(eval_fraction {split['eval_fraction']}, seed {split['seed']}) |")
    lines += [
        "",
        "## Preprocessing",
        "",
        *(f"- {key}: {value}" for key, value in prep.items()),
        "",
        "Rebuild: `" + metadata.get("command", "see metadata") + "` with the same codec checkpoint.",
        "",
        "## Columns",
        "",
        "network, station, location, channel; starttime (ISO UTC of the first sample, 40 Hz grid); "
        "sampling_rate (original, Hz); num_frames T; codes [K, T] int16; gain [T] uint8; scale, offset "
        "(float64 codec side information); source_file; event_key; segment; window; augmentation "
        "(what tokenized_data.augment applied to this copy, empty for the recording as it is).",
        "",
        "## Use",
        "",
        "```python",
        "from tokenized_data import load_tokenized, LMExamples",
        f"corpus = load_tokenized('{name}')          # checks the codec identity",
        "train, validation = corpus.split(by='event')",
        "```",
        "",
        f"Back to waveforms: `eqcodec detokenize {name} --out waveforms/ [--codebooks k]` "
        "(miniSEED, 40 Hz, the input's physical units).",
        "",
        "## Metadata",
        "",
        "The full metadata (also in `dataset_info.json` as the dataset description):",
        "",
        "```json",
        json.dumps({k: v for k, v in metadata.items() if k not in ("parts",)}, indent=1, sort_keys=True),
        "```",
        "",
    ]
    return "\n".join(lines)


def _bits_per_second(config: dict) -> list[float]:

    return codec_config_from_dict(config).bits_per_second
