"""Retrieval evaluation: ranking metrics and BEIR dataset loading.

`contextd.eval.metrics` scores ranked lists against graded judgements the way BEIR
(pytrec_eval / trec_eval) does; `contextd.eval.beir` reads a BEIR dataset folder and turns its
corpus into `Document`s. Import the submodules directly; this package imports nothing.

    >>> from contextd.eval.metrics import evaluate
    >>> evaluate({"q1": ["d1", "d2"]}, {"q1": {"d2": 1}}, ks=(1,))["mrr@1"]
    0.0
"""
