"""Search over quantization choices: AWQ for any format, per-layer mixed precision, on Ray."""
