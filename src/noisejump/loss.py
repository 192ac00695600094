"""The keyed training losses under their short import path.

Their home is ``noisejump.objective.loss``; ``from noisejump.loss import keyed_mse`` keeps
working and is the path the documentation shows.
"""

from .objective.loss import LOSS_PREDICTIONS, keyed_mse, keyed_x_t, min_snr_weights

__all__ = ["LOSS_PREDICTIONS", "keyed_mse", "keyed_x_t", "min_snr_weights"]
