"""Campaigns: strategy lists with a randomized control group, executed in the simulator
or a bank's CRM, and evaluated against that control group (docs/campaigns.md).

`registry` keeps campaigns, members and evaluations in a database; `expression` parses
the selection language; `lists` draws a list with its holdout; `evaluation` measures
the effect. Heavy imports (pandas, models, MLflow) happen inside functions.
"""
