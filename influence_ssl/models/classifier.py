"""A classifier split into a feature extractor and a linear head.

The last-layer influence of Ren et al. (Sec. 3.1) needs the penultimate features and the
head's kernel and bias; every model of the project is a `Classifier`.
"""
import tf_keras as keras


class Classifier(keras.Model):
    """logits = head(backbone(x)).

    Args:
      backbone: a tf_keras model or layer mapping inputs to features [B, D].
      num_classes: K, the width of the Dense head.
      head_initializer: kernel initializer of the head.
      last_block: names of the backbone's layers that form its last block (the parameters, with the
        head's, of the Sec. 4.3 baselines' influence), or None if the model does not name one.
      head: an existing Dense layer of num_classes units to use as the head (e.g. a user's own model's),
        or None for a new one.
    """

    def __init__(self, backbone, num_classes, head_initializer="glorot_uniform", last_block=None, head=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone
        if head is None:
            # Under mixed precision the logits (and so every loss and the influence's head) stay float32.
            mixed = keras.mixed_precision.global_policy().name.startswith("mixed")
            head = keras.layers.Dense(num_classes, kernel_initializer=head_initializer, name="head",
                                      dtype="float32" if mixed else None)
        elif not isinstance(head, keras.layers.Dense) or head.units != num_classes:
            raise ValueError(f"head must be a Dense layer of {num_classes} units, got {head!r}.")
        self.head = head
        self.last_block = tuple(last_block) if last_block else ()

    def last_block_variables(self):
        """Trainable variables of the backbone's last block (not the head), in layer order."""
        if not self.last_block:
            raise ValueError(f"Model {self.name!r} does not name a last block.")
        return [v for name in self.last_block for v in self.backbone.get_layer(name).trainable_variables]

    def features(self, x, training=False):
        """Penultimate features [B, D]."""
        return self.backbone(x, training=training)

    def call(self, x, training=False):
        return self.head(self.features(x, training=training))
