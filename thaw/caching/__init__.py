"""The input caches: which frozen prefix a phase can skip (``planning``, ``prefix``), how much
memory they take (``memory``), the decoded-pixel store (``decoded``), the feature store and
its one-pass fill (``feature_cache``), and the seam the training loop reads its inputs
through (``inputs``)."""
