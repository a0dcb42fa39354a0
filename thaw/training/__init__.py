"""The training loop shared by ``thaw train`` and the Celery worker (no Redis, no Celery here)."""

from thaw.training.reporter import NullReporter, Reporter
from thaw.training.run import TrainResult, train

__all__ = ["NullReporter", "Reporter", "TrainResult", "train"]
