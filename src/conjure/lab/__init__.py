"""The model-family lab: GAN, VAE, pixel diffusion, latent diffusion, flow matching and an autoregressive
model, trained from scratch on Fashion-MNIST with the same data, conditioning, loop and evaluation."""
