"""What a tf.distribute run asks of the trainer: which process is the chief, which slice a replica takes."""
import tensorflow as tf

from influence_ssl.trainer.config import ConfigError


def worker_role(strategy):
    """(is_chief, (task type, task id)) of this process: under a multi-worker strategy the chief is the
    'chief' task, or worker 0 if the cluster has none; a single-process run is its own chief."""
    resolver = getattr(strategy, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    if task_type is None or isinstance(strategy, tf.distribute.TPUStrategy):
        return True, ("chief", 0)
    task_id = int(resolver.task_id or 0)
    if "chief" in resolver.cluster_spec().as_dict():
        return task_type == "chief", (task_type, task_id)
    return task_type == "worker" and task_id == 0, (task_type, task_id)


def check_replicas(num_replicas, source, config):
    """ConfigError unless `source` and the batch sizes of `config` can be split over the replicas."""
    if num_replicas == 1:
        return
    if not source.stateless:
        raise ConfigError("A distributed run needs a stateless source (batches sampled in the step).")
    for name in ("labeled_batch", "unlabeled_batch"):
        if getattr(config, name) % num_replicas:
            raise ConfigError(f"--{name}={getattr(config, name)} is not divisible by the "
                              f"{num_replicas} replicas.")


def replica_slice(batch, num_replicas):
    """This replica's share of every per-example tensor of the global batch (a dict of [B, ...])."""
    if num_replicas == 1:
        return batch
    index = tf.distribute.get_replica_context().replica_id_in_sync_group

    def take(x):
        size = tf.shape(x)[0] // num_replicas
        return x[index * size:(index + 1) * size]

    return {key: take(value) for key, value in batch.items()}
