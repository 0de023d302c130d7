"""The prompt grid: a PNG of guided DDIM samples, one row per prompt, the same x_T in every row."""
from __future__ import annotations

import sys
import textwrap
from pathlib import Path

from playground.evaluation.ldm.config import EvalConfig
from playground.evaluation.ldm.sampling import initial_noise, progress_bar
from playground.store.checkpoints import repo_root
from playground.training import mix_seed


def evaluate_grid(pipeline, cfg: EvalConfig) -> dict:
    """DDIM samples at the grid's guidance, one row per prompt, the same x_T in every row;
    saved as a PNG with each prompt written beside its row."""
    from playground.data.images import tensor_to_images
    from playground.evaluation.plots import image_grid, save_png

    k = cfg.grid_seeds
    x_T = initial_noise(pipeline, k, mix_seed(cfg.seed, 5))
    rows = []
    with progress_bar(k * len(cfg.grid_prompts), "grid", cfg.progress) as bar:
        for prompt in cfg.grid_prompts:
            images = pipeline.sample([prompt] * k, guidance=cfg.grid_guidance, sampler="ddim",
                                     steps=cfg.fast_steps, eta=0.0, seed=cfg.seed, x_T=x_T)
            rows.append(list(tensor_to_images(images.float().cpu())))
            bar.update(k)
    labels = ["\n".join(textwrap.wrap(p, 16)) for p in cfg.grid_prompts]  # fits the label margin
    path = Path(cfg.grid_path)
    path = path if path.is_absolute() else repo_root() / path
    save_png(image_grid(rows, row_labels=labels, col_labels=[f"x_T #{j}" for j in range(k)]), path)
    print(f"  wrote {path}", file=sys.stderr)
    try:
        shown = str(path.resolve().relative_to(repo_root()))
    except ValueError:
        shown = str(path)
    return {"prompt_grid": {"path": shown, "prompts": list(cfg.grid_prompts), "columns": k,
                            "guidance": cfg.grid_guidance, "sampler": f"DDIM-{cfg.fast_steps}",
                            "seed": cfg.seed}}
