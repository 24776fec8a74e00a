"""A small conv net: the CPU-scale stand-in for WRN-28-2 (sklearn digits 8x8, fast tests on 32x32).

Three conv-BN-leakyReLU(0.1) blocks (width, 2·width with stride 2, 2·width), global average
pooling to a 2·width embedding (64 for width 32), then the Dense head. Convs have no bias (each
feeds a BN), He-normal fan-out init as in the WRN, Glorot-normal head. BN momentum is 0.99 (not
FixMatch's 0.999) because CPU runs are a few thousand steps, over which a 0.999 moving average
would still lean on its initial value.
"""
import tf_keras as keras

from influence_ssl.models.classifier import Classifier
from influence_ssl.models.seeding import layer_seed
from influence_ssl.models.wide_resnet import conv_initializer


def small_cnn(num_classes=10, input_shape=(8, 8, 1), width=32, seed=None, *, bn_momentum=0.99,
              bn_epsilon=1e-3, leaky_alpha=0.1):
    """A built `Classifier`; features are [B, 2·width]. Its last block is the third conv and its BN
    (`last_block_split` cuts at the second block's activation)."""
    if width < 1 or num_classes < 1:
        raise ValueError(f"width and num_classes must be >= 1, got {width}, {num_classes}.")
    L = keras.layers
    seed_of = lambda i: layer_seed(seed, i)
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = inputs
    for i, (channels, stride) in enumerate([(width, 1), (2 * width, 2), (2 * width, 1)]):
        x = L.Conv2D(channels, 3, strides=stride, padding="same", use_bias=False,
                     kernel_initializer=conv_initializer(seed_of(i)), name=f"conv{i}")(x)
        x = L.BatchNormalization(momentum=bn_momentum, epsilon=bn_epsilon, name=f"bn{i}")(x)
        x = L.LeakyReLU(alpha=leaky_alpha, name=f"lrelu{i}")(x)
    embedding = L.GlobalAveragePooling2D(name="pool")(x)
    backbone = keras.Model(inputs, embedding, name="backbone")
    model = Classifier(backbone, num_classes,
                       head_initializer=keras.initializers.GlorotNormal(seed=seed_of(99)),
                       last_block=["conv2", "bn2"], name="small_cnn")
    model.build((None, *input_shape))
    return model
