"""bitmod.dialects."""
