"""The load test's mix: which endpoints are called (and which are left out, and why), in what
order, and with what arguments (the widgets' starting values, random seeds and slider moves, an
uploaded picture)."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

# endpoint → why it is not part of the mix
EXCLUDED = {
    "/train_start": "starts a training run (one at a time, writes runs/)",
    "/train_resume": "resumes a training run",
    "/train_cancel": "cancels a training run",
    "/train_status": "needs the name of an existing run",
    "/train_pick": "needs the name of an existing run",
    "/denoise_stop": "cancels other events",
    "/prompt_random_seed": "client-side dice (no work on the server)",
}
HEAVY = {
    "/denoise_ddpm": "DDPM 1000 steps (~20 s on 2 cores): --heavy",
    "/denoise_run": "DDPM and DDIM together: --heavy",
    "/prompt_sweep": "four guidance scales per call: --heavy",
}
# calls that share a session's state run in this order, as a user would make them
SEQUENCES = [("/traverse_encode", "/traverse_decode", "/traverse_decode", "/traverse_grid")]
# the map's seed is part of what is cached: students keep it, so it is not varied
KEEP_SEED = {"/latent_map", "/latent_map_cached", "/latent_map_point"}
# --quick: smaller versions of expensive defaults (tiny models in the test suite)
QUICK = {
    "/latent_map": {"method": "pca", "n_points": 200},
    "/latent_map_cached": {"method": "pca", "n_points": 200},
    "/latent_map_point": {"n_points": 200},
    "/synthfaces_grid": {"count": 8},
    "/prompt_generate": {"steps": 10, "n_faces": 1},
    "/prompt_sweep": {"steps": 10, "n_faces": 1},
    "/denoise_ddim": {"steps": 10, "n_faces": 1},
    "/denoise_ddpm": {"n_faces": 1},
    "/denoise_run": {"steps": 10, "n_faces": 1},
    "/denoise_forward": {"t": 10},
    "/denoise_forward_upload": {"t": 10},
}
SLIDER_RANGE = 3.0  # Traverse sliders are moved at random within ± this


def upload_picture(folder: str) -> str:
    """A 96×72 PNG to upload (any size: the app crops and resizes it)."""
    from PIL import Image

    path = Path(folder) / "upload.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (72, 96, 3), dtype=np.uint8)).save(path)
    return str(path)


class Plan:
    """Which endpoints are called, and with what arguments."""

    def __init__(self, api: dict, quick: bool, heavy: bool, picture: str,
                 diffusion_model: str | None):
        self.api, self.quick, self.picture = api, quick, picture
        self.diffusion_model = diffusion_model
        self.skipped: dict[str, str] = {}
        endpoints = []
        for name, info in api["named_endpoints"].items():
            reason = EXCLUDED.get(name) or (None if heavy else HEAVY.get(name))
            if reason is None:
                reason = self._missing(info)
            if reason:
                self.skipped[name] = reason
            else:
                endpoints.append(name)
        self.groups: list[tuple[str, ...]] = []
        for seq in SEQUENCES:
            if all(e in endpoints for e in seq):
                self.groups.append(seq)
        in_sequence = {e for g in self.groups for e in g}
        self.groups += [(e,) for e in endpoints if e not in in_sequence]

    def _missing(self, info: dict) -> str | None:
        for p in info["parameters"]:
            if p.get("parameter_has_default") or p["python_type"]["type"] in ("filepath", "str"):
                continue  # no file: the picture; no text: "" (an empty text box)
            if p["parameter_name"] == "model_name" and self.diffusion_model:
                continue
            if p["parameter_name"] == "current":
                continue
            if p["parameter_name"] == "model_name":
                return "no diffusion model to call it with"
            return f"no value for its parameter {p['parameter_name']!r}"
        return None

    def endpoints(self) -> list[str]:
        return [e for g in self.groups for e in g]

    def args(self, name: str, rng: np.random.Generator, raw: bool = False) -> dict:
        """Keyword arguments for one call (`raw`: for the REST API, no file to upload)."""
        from gradio_client import handle_file

        quick = QUICK.get(name, {}) if self.quick else {}
        kwargs = {}
        for p in self.api["named_endpoints"][name]["parameters"]:
            key, kind = p["parameter_name"], p["python_type"]["type"]
            if key in quick:
                value = quick[key]
            elif kind == "filepath":
                value = None if raw else handle_file(self.picture)
            elif key == "model_name" and not p.get("parameter_has_default"):
                value = self.diffusion_model
            elif "seed" in key and kind == "int" and name not in KEEP_SEED:
                value = int(rng.integers(0, 100_000))
            elif re.fullmatch(r"param_\d+", key) and name in ("/traverse_decode", "/traverse_grid"):
                value = round(float(rng.uniform(-SLIDER_RANGE, SLIDER_RANGE)), 2)
            elif p.get("parameter_has_default"):
                value = p["parameter_default"]
            else:
                value = "" if kind == "str" else None
            kwargs[key] = value
        return kwargs
