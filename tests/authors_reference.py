"""An independent numpy reference of one Λ step of the authors' code (jason718/semi-sup, main.py).

Written from the formulas of docs/design/authors_code_reading.md ("Formulas for an independent reference"),
not from this package: a test that compares the package with it compares two implementations. Only the
penultimate features of each forward (and the head's kernel and bias) come from a network; everything else is
here. Notation: F features, C classes, D = F·C; vec(M) of an [F, C] array is its C-order flattening
(index k·C + c); S(p) = diag(p) − p pᵀ.

    forward A (θ forward, batch statistics of [labeled; weak; strong]): a, w, s; mask_A = [max p_w >= τ]
    H = (1/|D'|) Σ_n kron(a_n a_nᵀ, S(p_l,n)) + (1/|U'|) Σ_i λ_old,i mask_A,i kron(s_i s_iᵀ, S(p_s,i)) + l2·I
    forward B (batch statistics of [weak; strong]): J[:, i] = vec(sB_i ⊗ (softmax(sB_i W + b) − onehot(ŷ_B,i)))
    forward V (batch statistics of V'):  g = (1/|V'|) Σ_j vec(v_j ⊗ (softmax(v_j W + b) − onehot(y_j)))
    h = −gᵀ H⁻¹ J
    M-Adam per sampled row i: t_i += 1, m, v as Adam, bias correction by t_i, λ_i = clip(λ_i − α m̂/(√v̂ + ε), 0, 2)
"""
import numpy as np


def softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def onehot(labels, num_classes):
    return np.eye(num_classes)[np.asarray(labels)]


def logit_curvature(p):
    """S(p) = diag(p) − p pᵀ for every row: [N, C, C]."""
    return np.einsum("nc,cd->ncd", p, np.eye(p.shape[1])) - np.einsum("nc,nd->ncd", p, p)


def kron_sum(features, probs, weights):
    """Σ_n weights_n · kron(x_n x_nᵀ, S(p_n)) as a [D, D] matrix (entry (k·C + c, j·C + d))."""
    num, dim = features.shape
    classes = probs.shape[1]
    blocks = np.einsum("n,nk,nj,ncd->kcjd", weights, features, features, logit_curvature(probs))
    assert blocks.shape == (dim, classes, dim, classes) and len(weights) == num
    return blocks.reshape(dim * classes, dim * classes)


def hessian(labeled_features, labeled_probs, strong_features, strong_probs, unlabeled_weights, l2=1.0):
    """H of the authors' total_loss = loss_wd + loss_xeu + loss_xe over the dense kernel [D, D].

    unlabeled_weights: λ_old · mask_A per unlabeled row. l2: the coefficient of the identity (the authors'
    code: 1, from the unscaled Σ ½‖K‖²)."""
    n_labeled, n_unlabeled = len(labeled_features), len(strong_features)
    h = kron_sum(labeled_features, labeled_probs, np.full(n_labeled, 1.0 / n_labeled))
    h = h + kron_sum(strong_features, strong_probs, np.asarray(unlabeled_weights, np.float64) / n_unlabeled)
    return h + l2 * np.eye(h.shape[0])


def example_gradients(features, residuals):
    """vec(x_i ⊗ r_i) for every row, as columns: [D, N]."""
    n, dim = features.shape
    return np.einsum("nk,nc->kcn", features, residuals).reshape(dim * residuals.shape[1], n)


def raw_ce_rows(weak_features, strong_features, kernel, bias):
    """J [D, U]: the gradient over the kernel of CE(strong logits, onehot(argmax weak logits)) for every
    unlabeled row, unmasked and unscaled (forward B's features)."""
    classes = kernel.shape[1]
    pseudo = np.argmax(weak_features @ kernel + bias, axis=1)
    residual = softmax(strong_features @ kernel + bias) - onehot(pseudo, classes)
    return example_gradients(strong_features, residual)


def validation_gradient(val_features, val_labels, kernel, bias):
    """g [D]: the gradient over the kernel of the mean CE on V' (forward V's features)."""
    residual = softmax(val_features @ kernel + bias) - onehot(val_labels, kernel.shape[1])
    return example_gradients(val_features, residual).mean(axis=1)


def hypergradient(g, h, j):
    """h_i = −gᵀ H⁻¹ J_i for every column of J: [U]."""
    return -(g @ np.linalg.inv(h) @ j)


class AuthorsMAdam:
    """Λ with the authors' M-Adam state: one step count per example, every sampled row stepped, λ in [0, upper].

    Rows repeated within one step are computed from the same old state and the last occurrence is stored
    (numpy's fancy-index assignment, as in the authors' code)."""

    def __init__(self, num_examples, alpha, beta_1=0.9, beta_2=0.999, epsilon=1e-8, upper=2.0, initial=1.0):
        self.alpha, self.beta_1, self.beta_2, self.epsilon, self.upper = alpha, beta_1, beta_2, epsilon, upper
        self.lam = np.full(num_examples, initial, np.float64)
        self.m = np.zeros(num_examples)
        self.v = np.zeros(num_examples)
        self.t = np.zeros(num_examples)

    def step(self, ids, grads):
        ids, grads = np.asarray(ids), np.asarray(grads, np.float64)
        t = self.t[ids] + 1
        m = self.beta_1 * self.m[ids] + (1 - self.beta_1) * grads
        v = self.beta_2 * self.v[ids] + (1 - self.beta_2) * grads ** 2
        m_hat = m / (1 - self.beta_1 ** t)
        v_hat = v / (1 - self.beta_2 ** t)
        lam = self.lam[ids] - self.alpha * m_hat / (np.sqrt(v_hat) + self.epsilon)
        self.lam[ids] = np.clip(lam, 0.0, self.upper if self.upper else np.inf)
        self.m[ids], self.v[ids], self.t[ids] = m, v, t


def split_rows(features, sizes):
    """Rows of one forward split by view sizes."""
    return np.split(features, np.cumsum(sizes)[:-1])


def lambda_step(state, ids, forward_a, forward_b, forward_v, val_labels, kernel, bias, threshold, l2=1.0):
    """One Λ step of the authors' code on the state (an AuthorsMAdam); returns a dict of its intermediates.

    forward_a: (labeled, weak, strong) features of the θ forward [n, F], [U, F], [U, F];
    forward_b: (weak, strong) features of the per-example forward; forward_v: [V, F] of the validation forward.
    kernel [F, C], bias [C]; threshold τ (mask_A = max p_w >= τ)."""
    kernel, bias = np.asarray(kernel, np.float64), np.asarray(bias, np.float64)
    a, w, s = (np.asarray(x, np.float64) for x in forward_a)
    p_w = softmax(w @ kernel + bias)
    mask = (p_w.max(axis=1) >= threshold).astype(np.float64)
    lam_old = state.lam[np.asarray(ids)].copy()
    h_matrix = hessian(a, softmax(a @ kernel + bias), s, softmax(s @ kernel + bias), lam_old * mask, l2)
    weak_b, strong_b = (np.asarray(x, np.float64) for x in forward_b)
    j = raw_ce_rows(weak_b, strong_b, kernel, bias)
    g = validation_gradient(np.asarray(forward_v, np.float64), val_labels, kernel, bias)
    grads = hypergradient(g, h_matrix, j)
    state.step(ids, grads)
    return {"mask": mask, "lam_old": lam_old, "hessian": h_matrix, "rows": j, "g": g, "grads": grads}
