"""bitmod.backends."""
