"""Dataset sources: the real FETAL_PLANES_DB and the built-in phantom."""
