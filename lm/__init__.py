"""The seismic token language model: delayed codebook interleaving over the codec's gain + 8 codebook streams.

    from lm import SeismicLM, load_lm
    lm = load_lm("my-lm/final")                    # or load_lm() for the shipped default (lm/pretrained)
    continuation = lm.generate_frames(context, 20)  # context [B, 9, C] tokens -> [B, 9, 20]

Layer 3 of 5 (codec <- tokenized_data <- lm <- tasks <- cli). Modules: delay
(DelayPattern), model (SeismicLMConfig, SeismicLM, load_lm; sampling defaults in
its generation_config), train (TrainLMConfig, train_lm: `eqcodec train-lm`),
generate (continue_codes, continue_array, generate_continuations: `eqcodec generate`).
"""

from .delay import DelayPattern
from .model import SeismicLM, SeismicLMConfig, load_config, load_lm

__all__ = ["DelayPattern", "SeismicLM", "SeismicLMConfig", "load_config", "load_lm"]
