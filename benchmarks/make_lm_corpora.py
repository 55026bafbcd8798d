"""Build the base LM's token corpora from the development data (../shared/data), with the shipped codec.

    OMP_NUM_THREADS=1 python benchmarks/make_lm_corpora.py --out runs/corpora [--codec DIR] [--copies 3]

Writes two corpora (each a Hugging Face dataset with its card, `eqcodec tokenize`'s format):

    OUT/train       nc-events training split (codec.data.nc_events_split), obspy's bundled
                    recordings (codec.data.obspy_recordings) and the training stations of
                    public-recordings (codec.data.public_recordings_split); every segment
                    with --copies - 1 augmented copies (tokenized_data.augment), real noise
                    for the copies taken from two training broadband days
    OUT/heldout     nc-events held-out split and the held-out stations of public-recordings
                    (US.OXF, II.KAPI, Rutford ST09/ST10), the recordings only
    OUT/continuous-train   with --continuous-train only: the continuous broadband days of the training
                    stations (IU.ANMO x 4, TA.109C), augmented as OUT/train (a data-mix experiment of the LM card)

Both are resumable (rerun the same command). Windows are --window-seconds long (default 128,
the base LM's context).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SHARED = REPO.parent / "shared" / "data"
NOISE_DAYS = ["IU.ANMO.00.BHZ.2013.006", "TA.109C..BHE.2016.249.M"]


def corpus_inputs() -> tuple[list[str], list[str], list[str]]:
    """(training files, held-out files, noise files) as strings."""
    from codec.data import nc_events_split, obspy_recordings, public_recordings_split

    nc_train, nc_held = nc_events_split(SHARED / "nc-events")
    public_train, public_held = public_recordings_split(SHARED / "public-recordings")
    train = [*nc_train, *obspy_recordings(), *public_train]
    noise = [p for p in public_train if p.name in NOISE_DAYS]
    return [str(p) for p in train], [str(p) for p in [*nc_held, *public_held]], [str(p) for p in noise]


def main(argv=None) -> int:
    from tokenized_data import Augmentation, Preprocessing, tokenize

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--codec", default=None, help="codec folder (default: the shipped one)")
    parser.add_argument("--copies", type=int, default=3, help="augmentation copies per segment, original included")
    parser.add_argument("--window-seconds", type=int, default=128)
    parser.add_argument("--num-proc", type=int, default=1)
    parser.add_argument("--continuous-train", action="store_true",
                        help="write OUT/continuous-train (the training stations' broadband days) instead")
    args = parser.parse_args(argv)

    train, held_out, noise = corpus_inputs()
    prep = Preprocessing(window_seconds=args.window_seconds, min_window_seconds=30)
    train_prep = Preprocessing(window_seconds=args.window_seconds, min_window_seconds=30,
                               augmentation=Augmentation(copies=args.copies, seed=0, noise_files=tuple(noise)))
    corpora = (("heldout", held_out, prep), ("train", train, train_prep))
    if args.continuous_train:
        corpora = (("continuous-train", [f for f in train if "/ispaq/" in f.replace("\\", "/")], train_prep),)
    for name, files, settings in corpora:
        if (args.out / name).exists():
            print(f"{args.out / name} exists: kept")
            continue
        summary = tokenize(files, args.out / name, codec_path=args.codec, prep=settings, num_proc=args.num_proc,
                           progress=False)
        print(f"== {name}\n{summary.format()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
