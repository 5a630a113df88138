"""Files: the safetensors parameter archive and atomic writes."""
