"""bitmod.compiler."""
