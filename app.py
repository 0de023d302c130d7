"""VAE & Diffusion Playground: assembles the tabs and launches the app.

    python app.py            # http://127.0.0.1:7860
"""
from __future__ import annotations

import gradio as gr

from playground.ui import data_tab, morph, traverse
from playground.ui import latent_map as latent_map_tab

TITLE = "VAE & Diffusion Playground"


def build_app() -> gr.Blocks:
    with gr.Blocks(title=TITLE) as demo:
        gr.Markdown(f"# {TITLE}\nSee how variational autoencoders and diffusion models work "
                    "on 64×64 faces, and check every claim with a number.")
        traverse.build(demo)
        morph.build(demo)
        latent_map_tab.build(demo)
        data_tab.build()
    return demo


def main() -> None:
    demo = build_app()
    demo.queue(default_concurrency_limit=2).launch(max_file_size="5mb")


if __name__ == "__main__":
    main()
