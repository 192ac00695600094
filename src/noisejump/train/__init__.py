"""Training a diffusion model on noisejump's forward process.

One concept per module:

    data         built-in data sets (digits, photos, folder:PATH) and the keyed data order
    keyed        per-sample random draws keyed by (seed, global sample index, step, stream)
    timesteps    timestep samplers: uniform, stratified, logit-normal, loss-aware importance
    objective    prediction targets and min-SNR-gamma loss weights
    unet         a small U-Net (timestep embedding, residual blocks, low-resolution attention)
    checkpoint   atomic safetensors + JSON checkpoints
    distributed  torchrun / DDP set-up
    loop         the training loop (``train``)
    sampling     ancestral DDPM (exact posterior) and DDIM samplers
    evaluate     Frechet distance, memorisation and classifier checks for digits models
    pictures     PNG grids and plots

Heavy optional imports (scikit-learn, Pillow, matplotlib) happen inside functions, so
``import noisejump`` stays light.
"""
