"""Learn a weight per unlabeled example with Keras' fit (Ren et al., NeurIPS 2020, Alg. 1).

scikit-learn's handwritten digits (offline): 50 labeled images, 100 for validation, 1,300 unlabeled and the
rest for testing; your own Keras backbone and Dense head; Pseudo-Label. Every step trains θ on the λ-weighted
loss; every 20 steps after 100 of warm-up, λ of the batch's unlabeled examples takes a step down the gradient
of the validation loss (last-layer influence, M-Adam).

    python examples/keras_fit.py
"""
import numpy as np
import tensorflow as tf
import tf_keras as keras
from sklearn.datasets import load_digits

from influence_ssl.optimizers import MaskedAdam
from influence_ssl.ssl import PseudoLabel
from influence_ssl.trainer import WeightedSSLModel, ssl_dataset

SEED = 0
keras.utils.set_random_seed(SEED)

# ----- data: labeled, validation, unlabeled (each with its integer id) and test ------------------------
digits = load_digits()
x, y = (digits.data / 16.0).astype(np.float32), digits.target.astype(np.int64)
order = np.random.default_rng(SEED).permutation(len(y))
labeled, validation, unlabeled, test = np.split(order, [50, 150, 1450])
ids = np.arange(len(unlabeled))  # λ_u is indexed by these

labeled_data = tf.data.Dataset.from_tensor_slices((x[labeled], y[labeled])).shuffle(50, seed=SEED).repeat().batch(32)
unlabeled_data = (tf.data.Dataset.from_tensor_slices((x[unlabeled], ids))
                  .shuffle(len(ids), seed=SEED).repeat().batch(128))

# ----- your own classifier: any backbone (inputs -> features) and a Dense head (features -> logits) ----
backbone = keras.Sequential([keras.Input(shape=(64,)), keras.layers.Dense(128, activation="relu"),
                             keras.layers.Dense(128, activation="relu")])
head = keras.layers.Dense(10)
head.build((None, 128))

model = WeightedSSLModel((backbone, head), PseudoLabel(threshold=0.9), validation=(x[validation], y[validation]),
                         num_unlabeled=len(ids), inner_steps=20, weight_warmup=100,
                         weight_optimizer=MaskedAdam(0.05), weight_decay=5e-4)
model.compile(optimizer=keras.optimizers.Adam(3e-3),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
# Keras' validation_data keeps its meaning (a held-out set it reports on, here the test split); λ learns on
# the wrapper's `validation`.
model.fit(ssl_dataset(labeled_data, unlabeled_data), steps_per_epoch=100, epochs=3,
          validation_data=(x[test], y[test]), callbacks=[keras.callbacks.TerminateOnNaN()], verbose=2)

# ----- what was learned --------------------------------------------------------------------------------
lam = model.example_weights.to_numpy()
moved = model.example_weights.counts_numpy() > 0  # examples some Λ step gave a non-zero hypergradient
# The unlabeled examples' true labels, never used in training, tell which ones the model gets wrong.
wrong = np.argmax(model.predict(x[unlabeled], verbose=0), axis=-1) != y[unlabeled]
print(f"λ over {len(lam)} unlabeled examples: mean {lam.mean():.4f}, min {lam.min():.4f}, max {lam.max():.4f}; "
      f"{moved.sum()} moved by {int(model.example_weights.optimizer.iterations)} Λ steps")
for name, rows in (("predicted right", moved & ~wrong), ("predicted wrong", moved & wrong)):
    if rows.any():
        print(f"  {name}: {rows.sum()} examples, mean λ {lam[rows].mean():.4f}")
print(f"test accuracy: {model.evaluate(x[test], y[test], verbose=0)[1]:.3f}")
