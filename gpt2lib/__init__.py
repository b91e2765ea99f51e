"""gpt2lib: an exact, readable GPT-2 in PyTorch.

The package follows the paper (Radford et al., 2019, *Language Models are Unsupervised
Multitask Learners*) section by section:

============================  =========================================================
paper                         module
============================  =========================================================
§2.1 Training dataset         :mod:`gpt2lib.webtext`, :mod:`gpt2lib.data`, :mod:`gpt2lib.datasets`
§2.2 Input representation     :mod:`gpt2lib.tokenizer` (tiktoken), :mod:`gpt2lib.bpe` (educational)
§2.3 Model                    :mod:`gpt2lib.model`, :mod:`gpt2lib.generation`, :mod:`gpt2lib.weights`
training                      :mod:`gpt2lib.train`, :mod:`gpt2lib.checkpoint`, :mod:`gpt2lib.loss`
§3 Experiments                :mod:`gpt2lib.evaluate`, :mod:`gpt2lib.tasks`, :mod:`gpt2lib.detokenize`
§4 Generalization             :mod:`gpt2lib.memorization`
============================  =========================================================

The most used names are re-exported here and imported lazily, so ``import gpt2lib`` is cheap.
(The trainer is ``gpt2lib.train.train``: a package attribute ``train`` would be replaced by the
submodule of that name as soon as it is imported.)
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "get_gpt2_tokenizer": "gpt2lib.tokenizer",
    "GPT2Tokenizer": "gpt2lib.tokenizer",
    "BytePairTokenizer": "gpt2lib.bpe",
    "GPT2Config": "gpt2lib.model",
    "GPT2": "gpt2lib.model",
    "TrainConfig": "gpt2lib.train",
    "estimate_memory": "gpt2lib.train",
    "download": "gpt2lib.datasets",
    "prepare": "gpt2lib.data",
    "load_pretrained_tiny": "gpt2lib.zoo",
    "evaluate_lm": "gpt2lib.evaluate",
    "get_task": "gpt2lib.tasks",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'gpt2lib' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return __all__
