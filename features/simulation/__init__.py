"""The simulated retail bank behind `clm simulate` (entry point: `features.simulator`).

`population` draws who the customers are, `bank` moves them through their latent
lifecycle month by month, `tables` turns each month into raw-table rows and
`oracle` scores the true hazards against what happened.
"""
