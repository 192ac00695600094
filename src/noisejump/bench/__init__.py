"""What ``noisejump bench`` runs: medians measured side by side, in one run.

timing     medians of repeated runs, interleaved so that ratios hold on a noisy machine
chain      the O(1) closed form against the O(t) chain (``--suite chain``, the default)
noising    the noising step's variants against a device copy (``--suite noising``)
"""
