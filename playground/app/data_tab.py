"""The SynthFaces tab: random faces from a seed, and one face built from factor sliders."""
from __future__ import annotations

import gradio as gr
import numpy as np

from playground.app import common
from playground.data import synthfaces as sf
from playground.data.figures import image_grid
from playground.pipelines.inputs import MAX_SEED, check_seed, in_range

EXPLAIN = r"""
### SynthFaces: faces with known causes
Every face is rendered from **16 independent factors** $f = (f_1, \dots, f_{16})$
(head turn, tilt, light direction, skin tone, smile, hair, glasses, ...).
Because we know $f$ for every image, we can later *measure* whether a VAE's latent
dimension $z_j$ captured a factor: e.g. the correlation $r(z_j, f_\text{light})$.
"""

MAX_GRID = 64


@common.user_errors
def random_grid(seed: float, count: float) -> np.ndarray:
    """Seed and count in, an image grid (uint8 H×W×3) out."""
    seed = check_seed(seed)
    count = in_range(count, "number of faces", 1, MAX_GRID, whole=True)
    images, _, _ = sf.generate(count, seed)
    return np.asarray(image_grid(images, cols=min(8, count), scale=2, pad=2))


def face_from_sliders(yaw, roll, light, skin, width, smile, mouth_open, eye_open, brow,
                      hair_color, hair_style, eyeglasses, hat, facial_hair, lipstick,
                      background) -> np.ndarray:
    """Factor values in (categories by name), one face (uint8 256×256×3) out."""
    values = dict(locals())
    factors = {}
    for name in sf.FACTOR_NAMES:
        value = values[name]
        if name not in sf.CONTINUOUS_FACTORS and value not in sf.CATEGORICAL_FACTORS[name]:
            raise gr.Error(f"{name} must be one of {list(sf.CATEGORICAL_FACTORS[name])}.")
        if name in sf.CONTINUOUS_FACTORS:
            factors[name] = np.array([value], dtype=np.float32)
        else:
            factors[name] = np.array([sf.CATEGORICAL_FACTORS[name].index(value)], dtype=np.int64)
    try:
        image = sf.render(factors)[0]
    except ValueError as err:
        raise gr.Error(str(err)) from err
    return np.asarray(image_grid(image[None], cols=1, scale=4))


def build() -> None:
    """Add the tab's components and events to the enclosing Blocks."""
    with gr.Tab("SynthFaces"):
        gr.Markdown(EXPLAIN, latex_delimiters=[{"left": "$", "right": "$", "display": False}])
        with gr.Row():
            with gr.Column(scale=1):
                seed = common.number_box(0, "Seed", 0, MAX_SEED)
                count = gr.Slider(1, MAX_GRID, value=32, step=1, label="Number of faces")
                button = gr.Button("Generate", variant="primary")
            grid = gr.Image(label="Random SynthFaces", type="numpy", format="png",
                            elem_id="synthfaces-grid")
        button.click(random_grid, [seed, count], grid, api_name="synthfaces_grid",
                     validator=common.field_validator([seed, count]))

        gr.Markdown("#### Build a face, one factor at a time")
        default = sf.default_factors(1)
        with gr.Row():
            with gr.Column(scale=2):
                controls = []
                for name in sf.FACTOR_NAMES:
                    if name in sf.CONTINUOUS_FACTORS:
                        lo, hi = sf.CONTINUOUS_FACTORS[name]
                        controls.append(gr.Slider(lo, hi, value=round(float(default[name][0]), 2),
                                                  step=0.05, label=name))
                    else:
                        cats = sf.CATEGORICAL_FACTORS[name]
                        controls.append(gr.Radio(list(cats), value=cats[int(default[name][0])],
                                                 label=name))
            # drawn now, so the panel never opens empty
            face = gr.Image(face_from_sliders(*[c.value for c in controls]), label="Face",
                            type="numpy", format="png")
        gr.on([c.change for c in controls], face_from_sliders, controls, face,
              api_name="synthfaces_face", show_progress="hidden")
