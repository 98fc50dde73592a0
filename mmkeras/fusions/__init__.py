"""Fusions: several modality features with presence masks -> one joint feature."""
