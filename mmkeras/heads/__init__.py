"""Heads: projection heads shared by every representation, probes, decoders."""
