"""Conversation memory: recent window, running summary, recall of evicted turns."""
