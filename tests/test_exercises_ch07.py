"""Chapter 07's exercise checkers: the reference solutions pass, plausible mistakes are caught."""

import pytest
import torch
import torch.nn.functional as F

from utils.exercises import ExerciseFailed
from utils.exercises.ch07 import (
    check_feed_forward_as_convolutions,
    check_feed_forward_parameters,
    check_pre_norm_stack,
    check_rms_norm,
)


def test_parameter_count_without_biases_is_rejected_with_a_hint():
    with pytest.raises(ExerciseFailed, match="the two biases add d_ff \\+ C more"):
        check_feed_forward_parameters(lambda C, d_ff: 2 * C * d_ff)
    with pytest.raises(ExerciseFailed, match="return an int"):
        check_feed_forward_parameters(lambda C, d_ff: 2.0 * C * d_ff + d_ff + C)


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


def test_pre_norm_stack_mistakes_are_named():
    def post_norm(x, sublayers, norms, final_norm):
        for f, norm in zip(sublayers, norms):
            x = norm(x + f(x))
        return final_norm(x)

    def no_final_norm(x, sublayers, norms, final_norm):
        for f, norm in zip(sublayers, norms):
            x = x + f(norm(x))
        return x

    def no_residual(x, sublayers, norms, final_norm):
        for f, norm in zip(sublayers, norms):
            x = f(norm(x))
        return final_norm(x)

    def normalised_stream(x, sublayers, norms, final_norm):
        for f, norm in zip(sublayers, norms):
            x = norm(x + f(norm(x)))
        return final_norm(x)

    with pytest.raises(ExerciseFailed, match="that is post-norm"):
        check_pre_norm_stack(post_norm)
    with pytest.raises(ExerciseFailed, match="apply final_norm once at the end"):
        check_pre_norm_stack(no_final_norm)
    with pytest.raises(ExerciseFailed, match="residual connection is missing"):
        check_pre_norm_stack(no_residual)
    with pytest.raises(ExerciseFailed, match="largest difference"):
        check_pre_norm_stack(normalised_stream)
    with pytest.raises(ExerciseFailed, match="should be a torch.Tensor, got NoneType"):
        check_pre_norm_stack(lambda x, sublayers, norms, final_norm: None)
