"""The freeze engine: which parameters train in which phase, and the optimizer that follows.

Reading order: ``model_index`` (a model's parameters, modules and layer ``groups``),
``selectors`` (names in a spec to parameters), ``trainable`` (the trainable map and
BatchNorm modes), ``timeline`` (freeze rules and unfreeze events as phases),
``param_options`` (lr and weight decay per parameter and phase), ``lr_curve``,
``engine`` (all of it applied to a live model and optimizer), ``resolve`` (a spec
against its model), ``plan`` and ``layer_rows`` (the per-layer rows; ``stored_rows``
as a job stores them), ``model_layers``.
"""
