"""The trainer: Alg. 1 over a model, an SSL algorithm and a data source (Trainer), or under Keras' fit
(WeightedSSLModel)."""
from influence_ssl.trainer.config import ConfigError, TrainConfig
from influence_ssl.trainer.data_source import DataSource
from influence_ssl.trainer.in_memory_source import InMemorySource
from influence_ssl.trainer.keras_model import WeightedSSLModel, ssl_dataset
from influence_ssl.trainer.trainer import CheckpointError, Trainer, TrainingDiverged

__all__ = ["TrainConfig", "ConfigError", "DataSource", "InMemorySource", "Trainer", "TrainingDiverged",
           "CheckpointError", "WeightedSSLModel", "ssl_dataset"]
