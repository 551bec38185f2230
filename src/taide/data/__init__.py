"""Corpus preprocessing for Taiwan text (the card's list). So far: the text transforms that the
pipeline's stages will wrap — character normalization, layout line-break joining, PII redaction."""
