"""Everything Optuna: study spec and search space, samplers/pruners, storage, objective."""
