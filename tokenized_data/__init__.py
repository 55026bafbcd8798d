"""Token corpora: seismic waveforms as EQcodec tokens in Hugging Face datasets.

    eqcodec tokenize archive/ --out corpus            # waveforms -> corpus (cli.tokenize)
    eqcodec detokenize corpus --out waveforms/        # corpus -> miniSEED (tokenized_data.detokenize)

    from tokenized_data import load_tokenized, LMExamples, collate
    corpus = load_tokenized("corpus")                 # TokenCorpus: .dataset, .codec_id, .metadata, ...
    train, validation = corpus.split(by="event", eval_fraction=0.2, seed=0)
    examples = LMExamples(train, length=64)           # {"tokens": [K+1, 64], "mask": [64]}

Layer 2 of 5 (codec <- tokenized_data <- lm <- tasks <- cli). Modules: schema
(columns, metadata, STREAM_LAYOUT), prepare (merge, detrend, resample, windows),
augment (seeded augmented copies for LM corpora),
writer (resumable multi-process tokenization), reader (TokenCorpus,
load_tokenized, splits), examples (LM items), card (README.md), detokenize
(corpus -> miniSEED), random_corpus (structured random tokens for tests and benchmarks).
"""

from .augment import Augmentation
from .examples import LMExamples, collate
from .prepare import Preprocessing
from .reader import TokenCorpus, load_tokenized
from .schema import FEATURES, STREAM_LAYOUT, from_streams, stream_vocab_sizes, to_streams
from .writer import tokenize

__all__ = ["STREAM_LAYOUT", "FEATURES", "to_streams", "from_streams", "stream_vocab_sizes",
           "load_tokenized", "TokenCorpus", "LMExamples", "collate", "Preprocessing", "Augmentation", "tokenize"]
