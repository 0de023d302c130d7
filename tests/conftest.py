"""Test-session settings: one torch thread (tiny models run faster that way on 2 busy cores)."""
import torch

torch.set_num_threads(1)
