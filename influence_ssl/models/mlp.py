"""The synthetic experiments' network (Sec. 4.1): two fully connected layers of 100 units."""
import tf_keras as keras

from influence_ssl.models.classifier import Classifier
from influence_ssl.models.seeding import layer_seed


def two_layer_mlp(num_classes=2, input_dim=2, hidden_units=100, num_hidden=2, seed=None):
    """Dense(100)-ReLU x num_hidden, then a Dense head. Returns a built Classifier.

    The paper's "two fully-connected layers with 100 hidden units followed by a ReLU"
    is read as two hidden layers, each followed by ReLU, then the linear classifier. The last
    block (Sec. 4.3 baselines) is the last hidden layer (`last_block_split` cuts at its input).
    """
    init = lambda i: keras.initializers.GlorotUniform(seed=layer_seed(seed, i))
    backbone = keras.Sequential(
        [keras.layers.InputLayer(input_shape=(input_dim,))]
        + [keras.layers.Dense(hidden_units, activation="relu", kernel_initializer=init(i),
                              name=f"hidden_{i}") for i in range(num_hidden)],
        name="backbone",
    )
    model = Classifier(backbone, num_classes, head_initializer=init(num_hidden),
                       last_block=[f"hidden_{num_hidden - 1}"], name="mlp")
    model.build((None, input_dim))
    return model
