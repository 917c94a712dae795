"""The tiny space whose trainer family names its own Lightning logger: a CSV file under the config's ``csv_log_dir``."""

import tiny
from pytorch_lightning.loggers import CSVLogger
from tiny import BASELINES, BUDGET, OBJECTIVES, RESOURCES, SAMPLER  # noqa: F401  (the contract's names)

CONFIG = {**tiny.CONFIG, "csv_log_dir": "own_logs"}


class SineWithItsOwnLogger(tiny.Sine):
    def trainer_options(self, config):
        return {"logger": CSVLogger(config["csv_log_dir"], name="", version="")}


TRAINER = SineWithItsOwnLogger
