"""Corpus preprocessing for Taiwan text (the card's list), as a pipeline of small stages.

Built so far: JSONL input, the stages normalize → line_breaks → pii → min_length → exact_dedup, JSONL
shards and a stats report in which every input record is accounted for.
"""

from taide.data.clean import CleanConfig, CleanResult, run_clean
from taide.data.base import DataError, DedupStage, Document, Rejected, Stage
from taide.data.pipeline import DEFAULT_PIPELINE, STAGES, build_pipeline

__all__ = ["DEFAULT_PIPELINE", "STAGES", "CleanConfig", "CleanResult", "DataError", "DedupStage", "Document", "Rejected",
           "Stage", "build_pipeline", "run_clean"]
