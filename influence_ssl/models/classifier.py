"""A classifier split into a feature extractor and a linear head.

The last-layer influence of Ren et al. (Sec. 3.1) needs the penultimate features and the
head's kernel and bias; every model of the project is a `Classifier`. The Sec. 4.3 baselines' scope,
the last block plus the head, needs the model cut at the last block's input (`last_block_split`).
"""
import tensorflow as tf
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
        self._set_split(None)

    def last_block_variables(self):
        """Trainable variables of the backbone's last block (not the head), in layer order."""
        if not self.last_block:
            raise ValueError(f"Model {self.name!r} does not name a last block.")
        return [v for name in self.last_block for v in self.backbone.get_layer(name).trainable_variables]

    def last_block_split(self):
        """(trunk, block): two tf_keras models with block(trunk(x)) == self(x).

        trunk: inputs [B, ...] -> the last block's input activations [B, ...] (one tensor).
        block: those activations -> logits [B, K]; it holds the last block's layers, every layer after them
          (e.g. a residual shortcut, pooling) and the head, and shares their variables with this model.
        The cut is the input of the earliest layer named in `last_block`; a residual unit whose shortcut
        starts from that same tensor (the WRN's) is inside the block. Built once from the backbone's layer
        graph and cached outside the model's tracked state (checkpoints are unchanged).
        Raises ValueError if no last block is named, the backbone is not a functional/Sequential graph, or
        the block cannot be cut at one tensor (a path to the output that bypasses it).
        """
        if self._split is None:
            with tf.init_scope():  # layer-graph construction is eager work, also when first asked in a trace
                self._set_split(self._build_split())
        return self._split

    @tf.__internal__.tracking.no_automatic_dependency_tracking
    def _set_split(self, split):
        self._split = split

    def _build_split(self):
        self.last_block_variables()  # the "does not name a last block" error
        backbone = self.backbone
        if not getattr(backbone, "_is_graph_network", False):
            raise ValueError(f"Model {self.name!r}: the last block needs a functional or Sequential backbone "
                             f"to be cut out, not {type(backbone).__name__}.")
        named = set(self.last_block)
        first = next(layer for layer in backbone.layers if layer.name in named)
        cut = first.input
        if isinstance(cut, (list, tuple, dict)):
            raise ValueError(f"Model {self.name!r}: the last block's first layer {first.name!r} takes "
                             "several inputs; the block must start from one tensor.")
        trunk = keras.Model(backbone.inputs, cut, name=f"{self.name}_trunk")
        try:
            block = keras.Model(cut, self.head(backbone.outputs[0]), name=f"{self.name}_block")
        except ValueError as e:
            raise ValueError(f"Model {self.name!r}: the output is not a function of the last block's input "
                             f"alone ({e})") from None
        inside = {id(layer) for layer in block.layers}
        missing = [name for name in self.last_block if id(backbone.get_layer(name)) not in inside]
        if missing:
            raise ValueError(f"Model {self.name!r}: last-block layers {missing} are not after its first layer "
                             f"{first.name!r}.")
        return trunk, block

    def features(self, x, training=False):
        """Penultimate features [B, D]."""
        return self.backbone(x, training=training)

    def call(self, x, training=False):
        return self.head(self.features(x, training=training))
