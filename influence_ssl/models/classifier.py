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
    """

    def __init__(self, backbone, num_classes, head_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone
        self.head = keras.layers.Dense(num_classes, kernel_initializer=head_initializer, name="head")

    def features(self, x, training=False):
        """Penultimate features [B, D]."""
        return self.backbone(x, training=training)

    def call(self, x, training=False):
        return self.head(self.features(x, training=training))
