"""Where models and files live: `checkpoints` (model folders: save, load, names → folders),
`model_kinds` (config.json's "kind" → config and model classes), `files` (atomic JSON and
safetensors), `disk_cache` (the folder of recomputable files), `model_cache` (loaded models)."""
