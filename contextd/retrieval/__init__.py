"""Retrieval (dense + lexical, fused) and ranking."""
