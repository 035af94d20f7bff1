"""Sequences: clean events to per-user item sequences, vocabularies and leak-free splits."""
