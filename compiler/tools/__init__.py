"""The console tools: ``bitmod-opt``, ``bitmod`` and ``bitmod-sim``."""
