"""bitmod.runtime."""
