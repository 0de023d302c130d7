"""The SynthFaces renderer: factors → anti-aliased 64×64 RGB faces, batch-vectorised in torch.

Each part of the face is a shape with an (approximate) signed distance ``d`` to its outline;
its anti-aliased coverage of a pixel is ``clamp(0.5 - d / pixel, 0, 1)`` — analytic
anti-aliasing, the cheap equivalent of supersampling a hard edge. Parts are alpha-blended
back to front, each only inside its window and only on the faces that have it.
"""
from __future__ import annotations

import contextlib
import os
from functools import partial

import numpy as np
import torch

from playground.data.synthfaces.canvas import Canvas, col, ellipse_sd, hsv_to_rgb, segment_sd, span
from playground.data.synthfaces.factors import FACTOR_NAMES, IMAGE_SIZE, validate_factors

# Fixed palettes (RGB in [0, 1]).
_HAIR_RGB = torch.tensor([[0.09, 0.07, 0.07], [0.42, 0.25, 0.12], [0.92, 0.78, 0.42],
                          [0.72, 0.72, 0.74]])
_SKIN_STOPS = torch.tensor([[0.99, 0.87, 0.80], [0.86, 0.64, 0.47], [0.42, 0.27, 0.18]])
_SHIRT_RGB = torch.tensor([0.30, 0.36, 0.45])
_HAT_RGB = torch.tensor([0.62, 0.16, 0.14])
_IRIS_RGB = torch.tensor([0.33, 0.21, 0.12])
_LIPSTICK_RGB = torch.tensor([0.78, 0.08, 0.22])


_HEAD_CX, _HEAD_CY, _HEAD_RY = 0.0, 0.02, 0.6  # head centre and height; its width varies
_EYE_Y = _HEAD_CY - 0.04
_MOUTH_Y = _HEAD_CY + 0.37


def _canvas(f: dict[str, torch.Tensor], size: int) -> Canvas:
    """Background, per-face parameters, head frame and head planes of one batch (B,) -> Canvas."""
    B = f["yaw"].shape[0]
    grid = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1
    Y, X = (v[None] for v in torch.meshgrid(grid, grid, indexing="ij"))  # (1, H, W) each

    def p(name):  # per-face parameter, shape (B, 1, 1)
        return f[name].float().view(B, 1, 1)

    yaw, light, width = p("yaw"), p("light"), p("width")
    skin_t = f["skin"].float()[:, None]  # (B, 1): piecewise-linear through the three stops
    skin_rgb = torch.where(skin_t < 0.5,
                           _SKIN_STOPS[0] + (_SKIN_STOPS[1] - _SKIN_STOPS[0]) * skin_t * 2,
                           _SKIN_STOPS[1] + (_SKIN_STOPS[2] - _SKIN_STOPS[1]) * (skin_t * 2 - 1))
    # Background: a hue, slightly lighter at the top.
    bg = hsv_to_rgb(f["background"].float(), 0.38, 0.86)
    # Head frame: roll rotates everything above the neck around a pivot at the chin.
    angle = p("roll") * 0.32
    cos, sin = torch.cos(angle), torch.sin(angle)
    pivot_y = 0.55
    lx, ly = light * 0.9, torch.full_like(light, -0.3)  # light direction, z towards the viewer
    c = Canvas(2.0 / size, X=X, Y=Y, img=col(bg) * (1.06 - 0.12 * (Y[:, None] + 1) / 2),
                x=cos * X + sin * (Y - pivot_y), y=-sin * X + cos * (Y - pivot_y) + pivot_y,
                yaw=yaw, light=light, width=width, smile=p("smile"), brow=p("brow"),
                mouth_open=p("mouth_open"), eye_open=p("eye_open"),
                hair_style=f["hair_style"].view(B, 1, 1), hat=f["hat"].view(B, 1, 1),
                facial_hair=f["facial_hair"].view(B, 1, 1), glasses=f["eyeglasses"].view(B, 1, 1),
                lipstick=f["lipstick"].view(B, 1, 1, 1), skin_col=col(skin_rgb),
                hair_col=col(_HAIR_RGB[f["hair_color"]]), lx=lx, ly=ly,
                lz=torch.sqrt((1 - lx * lx - ly * ly).clamp_min(0.05)),
                head_rx=0.46 + 0.16 * width,
                feat_cx=yaw * 0.17,  # features slide towards the side the head turns to
                eye_gap=0.2 * (1.0 - 0.12 * yaw.abs()))
    # The head, shaded as a Lambertian ellipsoid; later parts are clipped to it.
    c.head_sd = ellipse_sd(c.x, c.y, _HEAD_CX, _HEAD_CY, c.head_rx, _HEAD_RY)
    c.head = c.cover(c.head_sd)
    c.head_diffuse = c.diffuse(_HEAD_CX, _HEAD_CY, c.head_rx, _HEAD_RY)
    c.head_shade = 0.42 + 0.68 * c.head_diffuse
    return c


def _shoulders(c: Canvas) -> None:
    """Shoulders and neck are not tilted."""
    shoulders = c.cover(ellipse_sd(c.X, c.Y, 0.0, 1.32, 0.9, 0.52))
    c.blend(col(_SHIRT_RGB) * (1.0 - 0.15 * c.light * c.X)[:, None], shoulders)


def _neck(c: Canvas) -> None:
    neck_half = 0.16 + 0.06 * c.width
    neck_sd = torch.maximum(c.X.abs() - neck_half, 0.4 - c.Y)
    neck_shade = (0.78 - 0.25 * c.light * (-c.X / neck_half).clamp(-1, 1)).clamp(0.3, 1.0)
    c.blend(c.skin_col * neck_shade[:, None] * 0.92, c.cover(neck_sd))


def _long_hair(c: Canvas) -> None:
    """Long hair: a layer behind the head."""
    back_sd = torch.maximum(ellipse_sd(c.x, c.y, _HEAD_CX - c.yaw * 0.05, _HEAD_CY + 0.12,
                                        c.head_rx + 0.15, 0.78), c.y - 0.78)
    shade = 0.55 + 0.35 * c.diffuse(0.0, 0.1, c.head_rx + 0.2, 0.9)
    c.blend(c.hair_col * shade[:, None], c.cover(back_sd))


def _ear(c: Canvas, side: float) -> None:
    """The ear on the side the head turns away from shows more."""
    ear_rx = 0.075 * (1.0 - 0.6 * side * c.yaw).clamp(0.15, 1.6)
    ear_cx = side * (c.head_rx - 0.01) + c.yaw * 0.06
    ear = c.cover(ellipse_sd(c.x, c.y, ear_cx, _HEAD_CY + 0.04, ear_rx, 0.13))
    ear_shade = 0.62 + 0.3 * (side * c.light).clamp_min(0.0)
    c.blend(c.skin_col * ear_shade[:, None], ear)


def _head(c: Canvas) -> None:
    c.blend(c.skin_col * c.head_shade[:, None], c.head)


def _eye(c: Canvas, side: float) -> None:
    """Sclera whose height follows eye_open, iris and pupil clipped to it, lid line, brow."""
    ex = c.feat_cx + side * c.eye_gap
    e_rx = 0.095 * (1.0 - 0.25 * side * c.yaw)
    e_ry = 0.008 + 0.07 * c.eye_open
    sclera_sd = ellipse_sd(c.x, c.y, ex, _EYE_Y, e_rx, e_ry)
    sclera = c.cover(sclera_sd)
    c.blend(col(torch.tensor([0.96, 0.96, 0.94])), sclera * c.head)
    gaze_x = ex + c.yaw * 0.025
    r_iris, r_pupil = torch.full_like(e_rx, 0.05), torch.full_like(e_rx, 0.022)
    iris = c.cover(ellipse_sd(c.x, c.y, gaze_x, _EYE_Y, r_iris, r_iris)) * sclera
    c.blend(col(_IRIS_RGB), iris)
    pupil = c.cover(ellipse_sd(c.x, c.y, gaze_x, _EYE_Y, r_pupil, r_pupil)) * sclera
    c.blend(col(torch.tensor([0.02, 0.02, 0.02])), pupil)
    lid = c.cover(sclera_sd.abs() - 0.012) * (c.y < _EYE_Y + 0.2 * e_ry).float()
    c.blend(c.skin_col * 0.35, lid * c.head)

    # Brow: a capsule bent upwards in the middle by `brow`.
    bx = ex + side * 0.01
    half = 0.1
    t = ((c.x - bx) / half).clamp(-1, 1)
    curve = _EYE_Y - 0.13 - 0.02 * c.brow - 0.09 * c.brow * (1 - t * t)
    brow_sd = torch.sqrt(((c.x - bx).abs() - half).clamp_min(0) ** 2 + (c.y - curve) ** 2)
    brow_sd = brow_sd - (0.022 - 0.008 * t.abs())
    brow_rgb = torch.where((c.hair_style != 0).view(-1, 1, 1, 1), c.hair_col * 0.8,
                           c.skin_col * 0.45)
    c.blend(brow_rgb, c.cover(brow_sd) * c.head)


def _nose(c: Canvas) -> None:
    """Shadow on the side away from the light, nostrils, highlight on the lit side."""
    nose_x = c.feat_cx + c.yaw * 0.07
    nose_y = _HEAD_CY + 0.14
    full = partial(torch.full_like, c.yaw)
    shadow_side = -torch.sign(c.light) * (c.light.abs() > 0.05).float()
    nose_shadow = c.cover(ellipse_sd(c.x, c.y, nose_x + shadow_side * 0.045, nose_y,
                                      full(0.03), full(0.13)))
    c.blend(c.skin_col * 0.55, nose_shadow * (0.2 + 0.5 * c.light.abs()) * c.head)
    nose_tip = c.cover(ellipse_sd(c.x, c.y, nose_x, nose_y + 0.1, full(0.07), full(0.045)))
    c.blend(c.skin_col * (0.62 + 0.2 * (1 - c.light.abs()))[:, None], nose_tip * 0.6)
    for side in (-1.0, 1.0):
        nostril = c.cover(ellipse_sd(c.x, c.y, nose_x + side * 0.035, nose_y + 0.125,
                                      full(0.018), full(0.011)))
        c.blend(c.skin_col * 0.3, nostril)


def _mouth_frame(c: Canvas):
    """The mouth's centre line bends with `smile`, its opening grows with `mouth_open`.

    Returns mouth_x, mouth_w (B, 1, 1); u (across the mouth, -1..1), centre, taper, gap (B, h, w).
    """
    mouth_x = c.feat_cx + c.yaw * 0.03
    mouth_w = 0.18 + 0.05 * c.smile.clamp_min(0)
    u = (c.x - mouth_x) / mouth_w
    inside_w = (1.0 - u * u).clamp_min(0.0)
    centre = _MOUTH_Y + c.smile * 0.15 * (inside_w - 0.5)
    taper = torch.sqrt(inside_w)
    gap = (0.004 + 0.05 * c.mouth_open) * taper
    return mouth_x, mouth_w, u, centre, taper, gap


def _mouth_hole_sd(c: Canvas) -> torch.Tensor:
    """Where facial hair leaves the mouth free (B, h, w)."""
    mouth_x, mouth_w, _, centre, _, gap = _mouth_frame(c)
    return ellipse_sd(c.x, c.y, mouth_x, centre, mouth_w + 0.03, gap + 0.05)


def _beard(c: Canvas) -> None:
    """Jaw and chin, drawn before the mouth."""
    beard_sd = torch.maximum(torch.maximum(c.head_sd, (_MOUTH_Y - 0.1) - c.y), -_mouth_hole_sd(c))
    c.blend(c.hair_col * (0.65 + 0.3 * c.head_diffuse)[:, None], c.cover(beard_sd))


def _goatee(c: Canvas) -> None:
    chin = ellipse_sd(c.x, c.y, c.feat_cx + c.yaw * 0.03, _MOUTH_Y + 0.16,
                       torch.full_like(c.yaw, 0.1), torch.full_like(c.yaw, 0.09))
    c.blend(c.hair_col * 0.9, c.cover(torch.maximum(chin, -_mouth_hole_sd(c))))


def _lips(c: Canvas) -> None:
    """Lips and the open mouth (dark, with a row of teeth)."""
    _, _, u, centre, taper, gap = _mouth_frame(c)
    lip_rgb = torch.where(c.lipstick == 1, col(_LIPSTICK_RGB),
                          c.skin_col * torch.tensor([0.78, 0.52, 0.52]).view(1, 3, 1, 1))
    lip_sd = torch.maximum((c.y - centre).abs() - gap - 0.03 * taper, u.abs() - 1.0)
    c.blend(lip_rgb * (0.8 + 0.2 * c.head_shade)[:, None], c.cover(lip_sd))
    inner = c.cover(torch.maximum((c.y - centre).abs() - gap, u.abs() - 0.97))
    c.blend(col(torch.tensor([0.22, 0.04, 0.05])), inner)
    teeth = inner * c.cover(c.y - (centre - gap + 0.7 * gap + 0.004))
    c.blend(col(torch.tensor([0.93, 0.92, 0.86])), teeth * (c.mouth_open > 0.2).float())


def _mustache(c: Canvas) -> None:
    """Above the upper lip, following the mouth's curve."""
    _, _, u, centre, _, gap = _mouth_frame(c)
    must_sd = torch.maximum((c.y - (centre - gap - 0.06)).abs() - 0.028, u.abs() - 1.1)
    c.blend(c.hair_col * 0.85, c.cover(must_sd) * c.head)


def _hair(c: Canvas) -> None:
    """Hair on top of the head: short and long share a hairline; bangs come lower with a fringe."""
    cap_sd = ellipse_sd(c.x, c.y, _HEAD_CX - c.yaw * 0.04, _HEAD_CY - 0.03, c.head_rx + 0.05,
                         _HEAD_RY + 0.06)
    side_frac = ((c.x - _HEAD_CX - c.feat_cx * 0.5).abs() / c.head_rx).clamp(0, 1.5)
    bangs = c.hair_style == 3
    amp = torch.where(bangs, 0.35, 0.5)
    hairline = (torch.where(bangs, _HEAD_CY - 0.27, _HEAD_CY - 0.38) + amp * side_frac ** 3
                + 0.012 * torch.sin(c.x * 35) * bangs)
    slope = 3 * amp * side_frac ** 2 / c.head_rx + 0.42 * bangs  # |d hairline / dx|, bounded
    hairline_sd = (c.y - hairline) / torch.sqrt(1 + slope * slope)
    cap = c.cover(torch.maximum(cap_sd, hairline_sd))
    shade = 0.55 + 0.55 * c.diffuse(_HEAD_CX, _HEAD_CY - 0.03, c.head_rx + 0.05, _HEAD_RY + 0.06)
    c.blend(c.hair_col * shade[:, None], cap)


def _hat(c: Canvas) -> None:
    """Crown and brim in one colour, with a darker band."""
    half_w = c.head_rx - 0.02
    crown_sd = torch.maximum(torch.maximum((c.x - _HEAD_CX).abs() - half_w,
                                           c.y - (_HEAD_CY - 0.38)), (_HEAD_CY - 0.95) - c.y)
    top = ellipse_sd(c.x, c.y, _HEAD_CX, _HEAD_CY - 0.9, half_w, torch.full_like(c.yaw, 0.1))
    shade = (0.8 - 0.25 * c.light * (c.x - _HEAD_CX) / c.head_rx).clamp(0.4, 1.1)
    c.blend(col(_HAT_RGB) * shade[:, None], c.cover(torch.minimum(crown_sd, top)))
    band_sd = torch.maximum((c.y - (_HEAD_CY - 0.45)).abs() - 0.04, (c.x - _HEAD_CX).abs() - half_w)
    c.blend(col(_HAT_RGB) * 0.45, c.cover(band_sd))
    brim = c.cover(ellipse_sd(c.x, c.y, _HEAD_CX + c.yaw * 0.05, _HEAD_CY - 0.38, c.head_rx + 0.2,
                               torch.full_like(c.yaw, 0.065)))
    c.blend(col(_HAT_RGB) * 0.7, brim)


def _glasses(c: Canvas) -> None:
    """Two rims, a bridge, the arms to the ears, faintly tinted lenses."""
    rims = torch.zeros_like(c.x)
    lenses = torch.zeros_like(rims)
    for side in (-1.0, 1.0):
        ex = c.feat_cx + side * c.eye_gap
        g_rx = 0.135 * (1.0 - 0.25 * side * c.yaw)
        lens_sd = ellipse_sd(c.x, c.y, ex, _EYE_Y + 0.01, g_rx, torch.full_like(c.yaw, 0.1))
        rims = torch.maximum(rims, c.cover(lens_sd.abs() - 0.016))
        lenses = torch.maximum(lenses, c.cover(lens_sd))
        arm_x0 = torch.minimum(ex + side * g_rx, side * c.head_rx)
        arm_x1 = torch.maximum(ex + side * g_rx, side * c.head_rx)
        arm = segment_sd(c.x, c.y, arm_x0, arm_x1, _EYE_Y - 0.04, 0.012)
        rims = torch.maximum(rims, c.cover(arm))
    bridge = c.cover(segment_sd(c.x, c.y, c.feat_cx - c.eye_gap + 0.12,
                                 c.feat_cx + c.eye_gap - 0.12, _EYE_Y - 0.01, 0.013))
    c.blend(col(torch.tensor([0.85, 0.9, 1.0])), lenses * 0.18)
    c.blend(col(torch.tensor([0.06, 0.06, 0.08])), torch.maximum(rims, bridge))


_ALL = (-1.0, 1.0)
# The parts, back to front: (draw, rows, columns, the faces that have it; None: all).
# rows/columns bound, in image coordinates, every pixel the part can touch at any factor
# values (found over all extremes; test_windows_change_no_pixel checks them). Drawing each
# part on its window only, of the faces that have it only, is 2.3x as fast as full frames.
_PARTS = (
    (_shoulders, (0.75, 1), (-0.75, 0.75), None),
    (_neck, (0.35, 1), (-0.3, 0.3), None),
    (_long_hair, (-0.7, 1), _ALL, lambda c: c.hair_style == 2),
    (partial(_ear, side=-1.0), (-0.3, 0.5), (-0.9, -0.05), None),
    (partial(_ear, side=1.0), (-0.3, 0.5), (0.05, 0.9), None),
    (_head, (-0.65, 0.7), (-0.85, 0.85), None),
    (partial(_eye, side=-1.0), (-0.4, 0.25), (-0.75, 0.5), None),
    (partial(_eye, side=1.0), (-0.4, 0.25), (-0.5, 0.75), None),
    (_nose, (-0.1, 0.45), (-0.5, 0.5), None),
    (_beard, (0.1, 0.7), (-0.65, 0.65), lambda c: c.facial_hair == 3),
    (_goatee, (0.35, 0.75), (-0.35, 0.35), lambda c: c.facial_hair == 2),
    (_lips, (0.1, 0.65), (-0.55, 0.55), None),
    (_mustache, (0.05, 0.6), (-0.55, 0.55), lambda c: c.facial_hair % 2 == 1),  # moustache, beard
    (_hair, (-0.75, 0.6), (-0.95, 0.95), lambda c: c.hair_style != 0),
    (_hat, (-1, 0), _ALL, lambda c: c.hat == 1),
    (_glasses, (-0.3, 0.3), (-0.85, 0.85), lambda c: c.glasses == 1),
)
_FULL_FRAME = False  # tests set it to draw each part on the full frame (of the faces that have it)


def _render_chunk(f: dict[str, torch.Tensor], size: int) -> torch.Tensor:
    """Render one batch of faces. f: factor name -> (B,) tensor. Returns (B, 3, H, W) in [0, 1].

    Each part draws on a window: its rows x columns (views) of every face, or copies of the
    faces that have it, put back after.
    """
    c = _canvas(f, size)
    for part, rows, cols, which in _PARTS:
        rs, cs = (slice(None),) * 2 if _FULL_FRAME else (span(*rows, size), span(*cols, size))
        mask = None if which is None else which(c).view(-1)
        if mask is not None and not bool(mask.any()):
            continue
        faces = None if mask is None or bool(mask.all()) else mask.nonzero().squeeze(1)
        window = Canvas(c.pixel)
        window._cut = (c, rs, cs, faces)
        part(window)
        if faces is not None:
            c.img[faces, :, rs, cs] = window.img
    return c.img.clamp_(0.0, 1.0)


def render(factors: dict[str, np.ndarray], size: int = IMAGE_SIZE,
           chunk: int = 64) -> np.ndarray:
    """Render faces from factors on this thread. Returns uint8 (N, size, size, 3).

    Torch's intra-op threads are off meanwhile: the renderer is many small element-wise ops,
    where they cost more in synchronisation than they give (and collapse when the cores are
    busy). Large batches go to several threads instead (:func:`render_parallel`).
    """
    n = validate_factors(factors)
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    with _one_torch_thread():
        _render_range(out, factors, 0, n, chunk)
    return out


def _render_range(out: np.ndarray, factors: dict[str, np.ndarray], lo: int, hi: int,
                  chunk: int = 64) -> int:
    """Render faces lo..hi of ``factors`` into ``out[lo:hi]``, uint8 (N, S, S, 3); -> hi - lo.

    64 faces a chunk: fewer pay more Python per pixel, more fall out of the cache.
    """
    with torch.no_grad():  # grad mode is per thread
        for start in range(lo, hi, chunk):
            sl = slice(start, min(start + chunk, hi))
            f = {k: torch.from_numpy(np.ascontiguousarray(np.asarray(factors[k])[sl]))
                 for k in FACTOR_NAMES}
            img = _render_chunk(f, out.shape[1]).permute(0, 2, 3, 1)  # (B, S, S, 3)
            torch.from_numpy(out[sl]).copy_(img.mul_(255).add_(0.5))  # + 0.5, truncated: rounded
    return hi - lo


@contextlib.contextmanager
def _one_torch_thread():
    """Torch ops on one thread inside, then the old count back."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


_TASK = 256  # faces per task of render_parallel: small enough to keep every thread busy


def render_parallel(factors: dict[str, np.ndarray], workers: int | None = None,
                    progress: bool = False) -> np.ndarray:
    """:func:`render` spread over ``workers`` threads (default: one per core, at most 8).

    Threads, not processes: torch lets go of the GIL inside every op, and the Python between
    ops is at most a fifth of the time, so threads can share the cores; they start at once
    and write straight into the result. A process pool has to start interpreters that
    import torch (seconds) and send every image back; started by spawn or forkserver, its
    workers re-import the caller's ``__main__`` (a plain script without a main guard then
    dies with BrokenProcessPool), and fork is unsafe once torch's OpenMP threads have run.
    """
    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    n = validate_factors(factors)
    workers = workers or min(8, os.cpu_count() or 1)
    if workers <= 1 or n < 2 * _TASK:
        return render(factors)
    out = np.empty((n, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    with _one_torch_thread(), tqdm(total=n, disable=not progress, desc="SynthFaces",
                                   unit="img") as bar:
        pool = ThreadPoolExecutor(workers, initializer=torch.set_num_threads, initargs=(1,))
        try:
            for done in pool.map(lambda lo: _render_range(out, factors, lo, min(lo + _TASK, n)),
                                 range(0, n, _TASK)):
                bar.update(done)
        finally:
            pool.shutdown(cancel_futures=True)  # on Ctrl-C, do not render the rest first
    return out
