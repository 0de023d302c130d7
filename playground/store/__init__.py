"""Where models live: checkpoints (safetensors + config.json), the model cache."""
