"""VAE & Diffusion Playground: see how VAEs and diffusion models work on 64x64 faces."""

__version__ = "0.1.0"


def load(name, device="cpu"):
    """Load a trained model from ``trained/<name>`` or a run folder (safetensors only).

    Args:
        name: a model name under ``trained/`` (e.g. ``"vae-beta4"``) or a path to a run folder.
        device: where to put the weights (default CPU; pass ``"cuda"`` explicitly for a GPU).
    """
    from playground.store.checkpoints import load_model

    return load_model(name, device=device)
