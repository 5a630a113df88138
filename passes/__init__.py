"""bitmod.passes."""
