"""Chapter 07's exercise checkers: the reference solutions pass, plausible mistakes are caught."""

import pytest
import torch
import torch.nn.functional as F

from utils.exercises import ExerciseFailed
from utils.exercises.ch07 import (
    check_feed_forward_as_convolutions,
    check_rms_norm,
    check_scale_residual_outputs,
    check_swiglu,
)


def swiglu(x, W_gate, W_up, W_down, gate=F.silu):
    return (gate(x @ W_gate) * (x @ W_up)) @ W_down


def width(C):
    return round(8 * C / 3)


def test_swiglu_checker(capsys):
    check_swiglu(swiglu, width)
    assert "✓" in capsys.readouterr().out
    with pytest.raises(ExerciseFailed, match="wrong branch"):
        check_swiglu(lambda x, g, u, d: swiglu(x, u, g, d), width)
    with pytest.raises(ExerciseFailed, match="GLU"):
        check_swiglu(lambda x, g, u, d: swiglu(x, g, u, d, gate=torch.sigmoid), width)
    with pytest.raises(ExerciseFailed, match="ReGLU"):
        check_swiglu(lambda x, g, u, d: swiglu(x, g, u, d, gate=torch.relu), width)
    with pytest.raises(ExerciseFailed, match="differs from the expected"):  # no gate at all
        check_swiglu(lambda x, g, u, d: (x @ u) @ d, width)
    with pytest.raises(ExerciseFailed, match="nearly\\) equal"):
        check_swiglu(swiglu, lambda C: 4 * C)  # the ReLU network's width: 1.5 times the parameters
    with pytest.raises(ExerciseFailed, match="return an int"):
        check_swiglu(swiglu, lambda C: 8 * C / 3)


def test_rms_norm_mistakes_are_named():
    def layer_norm_instead(x, weight, eps):
        centred = x - x.mean(-1, keepdim=True)
        return centred / torch.sqrt(centred.pow(2).mean(-1, keepdim=True) + eps) * weight

    with pytest.raises(ExerciseFailed, match="subtracted the mean"):
        check_rms_norm(layer_norm_instead)
    with pytest.raises(ExerciseFailed, match="eps inside the square root"):
        check_rms_norm(lambda x, weight, eps: x / torch.sqrt(x.pow(2).mean(-1, keepdim=True)) * weight)
    with pytest.raises(ExerciseFailed, match="largest difference"):
        check_rms_norm(lambda x, weight, eps: x / torch.sqrt(x.pow(2).sum(-1, keepdim=True) + eps) * weight)


def test_convolution_mistakes_are_named():
    def channels_first(x, ff):
        h = F.relu(F.conv1d(x.transpose(1, 2), ff.linear1.weight[:, :, None], ff.linear1.bias))
        return F.conv1d(h, ff.linear2.weight[:, :, None], ff.linear2.bias)  # forgot to transpose back

    with pytest.raises(ExerciseFailed, match="transpose back"):
        check_feed_forward_as_convolutions(channels_first)

    def no_relu(x, ff):
        h = F.conv1d(x.transpose(1, 2), ff.linear1.weight[:, :, None], ff.linear1.bias)
        return F.conv1d(h, ff.linear2.weight[:, :, None], ff.linear2.bias).transpose(1, 2)

    with pytest.raises(ExerciseFailed, match="largest difference"):
        check_feed_forward_as_convolutions(no_relu)


def scaled(factor, which="linear2.weight"):
    def scale_(sublayers, n_residuals):
        for f in sublayers:
            dict(f.named_parameters())[which].mul_(factor(n_residuals))
    return scale_


def test_scale_residual_outputs_checker(capsys):
    check_scale_residual_outputs(scaled(lambda n: n ** -0.5))
    assert "✓" in capsys.readouterr().out


@pytest.mark.parametrize(("wrong", "named"), [
    (scaled(lambda n: n ** -0.5, "linear1.weight"), "linear1 changed"),
    (scaled(lambda n: n ** -0.5, "linear2.bias"), "a bias changed"),
    (scaled(lambda n: 1.0), "is unchanged"),
    (scaled(lambda n: 1 / n), "divided by n_residuals"),
    (scaled(lambda n: n ** 0.5), "multiplied by"),
    (scaled(lambda n: 0.5), "linear2.weight after scaling"),
    (lambda sublayers, n: 1.0, "return nothing"),
])
def test_scale_residual_outputs_checker_names_the_mistake(wrong, named):
    with pytest.raises(ExerciseFailed, match=named):
        check_scale_residual_outputs(wrong)
