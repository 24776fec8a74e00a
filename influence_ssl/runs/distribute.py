"""The tf.distribute strategy of a command-line run: --strategy and --tpu."""
import json
import os

import tensorflow as tf
from absl import flags

from influence_ssl.trainer.config import ConfigError

FLAGS = flags.FLAGS
STRATEGIES = ("auto", "multi_worker")


def define_flags():
    if "strategy" in FLAGS:
        return
    flags.DEFINE_string("tpu", None, "TPU name or address: train with TPUStrategy (untested here: no TPU).")
    flags.DEFINE_enum("strategy", "auto", list(STRATEGIES),
                      "auto: TPUStrategy with --tpu, else MirroredStrategy over every visible GPU, else one device. "
                      "multi_worker: MultiWorkerMirroredStrategy over the cluster in the TF_CONFIG environment "
                      "variable; run the same command on every worker with the same --train_dir.")


def make_strategy(strategy=None, tpu=None):
    """The strategy of --strategy/--tpu: call it before TensorFlow runs anything (a multi-worker strategy must be
    made first)."""
    strategy = strategy or FLAGS.strategy
    tpu = tpu if tpu is not None else FLAGS.tpu
    if strategy == "multi_worker":
        if tpu:
            raise ConfigError("--strategy=multi_worker and --tpu exclude each other.")
        check_tf_config(os.environ.get("TF_CONFIG"))
        return tf.distribute.MultiWorkerMirroredStrategy()
    if tpu:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    if tf.config.list_physical_devices("GPU"):
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def check_tf_config(text):
    """ConfigError unless `text` is a TF_CONFIG naming a cluster of workers and this process's task in it."""
    example = ('e.g. TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
               '"task": {"type": "worker", "index": 0}}\' on the first machine, index 1 on the second')
    if not text:
        raise ConfigError(f"--strategy=multi_worker needs the TF_CONFIG environment variable, {example}.")
    try:
        spec = json.loads(text)
        cluster, task = spec["cluster"], spec["task"]
        hosts = cluster[task["type"]]
        index = int(task["index"])
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"TF_CONFIG is not a cluster and a task ({type(e).__name__}: {e}), {example}.") from None
    if not 0 <= index < len(hosts):
        raise ConfigError(f"TF_CONFIG's task index {index} is not one of its {len(hosts)} {task['type']} hosts.")
