"""Keeping evaluation data out of training: which exam questions, bench prompts and answers a training text holds.

- ``items``: evaluation items read from the files an evaluation reads (exams in every `taide eval mc` format,
  taide-bench rows, any JSONL of prompts);
- ``keys``: the folded characters texts are compared by (width, case, script, punctuation and whitespace);
- ``index``: items indexed by character n-grams, and the search of a text for the items it holds;
- ``report``: decontamination.md/.json, and which exam items training data held (`taide eval mc --seen`).

The corpus stage is ``taide.data.decontaminate``; the SFT set's check ``taide.train.decontaminate``.
"""
