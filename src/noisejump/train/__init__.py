"""Training a diffusion model on noisejump's forward process.

One concept per module:

    data         built-in data sets (digits, photos, folder:PATH) and the keyed data order
    unet         a small U-Net (timestep embedding, residual blocks, low-resolution attention)
    checkpoint   atomic, SHA-256-verified safetensors + JSON checkpoints; damaged ones set aside
    files        whole, fsynced files and strict JSON
    restore      a run back from its checkpoint: the model, or the state to resume
    lock         one writer per run folder (flock)
    signals      SIGINT / SIGTERM: finish the step, checkpoint, stop
    divergence   a non-finite or growing loss, flagged
    errors       why a run stops early, with its exit status
    faults       the test suite's kill and signal hooks
    distributed  torchrun / DDP set-up
    loop         the training loop (``train``)
    sampling     ancestral DDPM (exact posterior) and DDIM samplers
    evaluate     Frechet distance, memorisation and classifier checks for digits models
    pictures     PNG grids and plots

Timestep samplers, prediction targets and loss weights live in ``noisejump.objective``.
Heavy optional imports (scikit-learn, Pillow, matplotlib) happen inside functions, so
``import noisejump`` stays light.
"""
