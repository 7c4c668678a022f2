"""Reusable neural building blocks shared by the upstream model and the proxy evaluators."""

from lee.nn.layers import MLP, CrossNetV2

__all__ = ["MLP", "CrossNetV2"]
