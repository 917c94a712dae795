"""The driver room: running a study. ``run`` plans the Optuna side, builds the Ray side and joins
them; ``bridge`` is the Ray Tune searcher that records every trial in Optuna; ``trainable`` trains
one trial in a Ray worker; ``heartbeat`` tells lost drivers' trials from live ones; ``phases`` and
``repeat`` are studies built from other studies."""
