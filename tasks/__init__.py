"""What the token LM is for, and how it is measured: the layer above codec, tokenized_data and lm.

Modules: forecast (probabilistic forecasts, `eqcodec forecast`), deconvolve
(predictive deconvolution, `eqcodec deconvolve`), adaptive (adaptive
subtraction of a prediction: matching filters, never louder than the input),
surprisal (the LM's per-frame negative log-likelihood), classical (zero, persistence,
AR/Burg forecasters and Wiener prediction-error filters: the baselines),
scores (forecast and deconvolution scores), synthetic (seeded reverberation
traces with known primaries), synthetic_seismograms (seeded seismogram-like
signals for LM pretraining), evaluate (`eqcodec evaluate`: every method on
one set of cases), demo (`eqcodec demo`: the whole pipeline), search (similarity
search over token corpora: `eqcodec index`, `eqcodec search`).

A new task is a module here: it may import codec,
tokenized_data and lm, and the CLI calls it from a module in cli/.
"""
