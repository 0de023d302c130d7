"""What the app runs: VAE traverse/morph, latent diffusion, the latent map, lessons, input checks."""
